"""``python -m taskd_lab.repeat --runs 3 --out out/repeat -- demo ...``: a ``taskd demo`` or
``taskd bench`` run several times, each figure the README quotes reported as its median with the
lowest and highest run (``spread``), with the command, date, machine, git commit and the load
before and after each run (``run``)."""
