# Image of Task Distributor for docker-compose.yml: the `taskd` CLI (dispatcher, agents, admin).
# It installs the runtime wheel built from these files alone (the Avro schemas ship inside
# streams/; the demo and benchmark in lab/ are not part of it). tests/test_wheel.py builds the
# wheel from exactly the files copied here and runs compose's commands with it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY taskd ./taskd
RUN pip install --no-cache-dir .
ENTRYPOINT ["taskd"]
