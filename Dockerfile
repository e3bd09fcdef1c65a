# The enginestream worker / CLI image: `docker compose up` runs it next to Kafka.
# Two stages: the first builds the wheel (which carries the schemas), the second
# installs that wheel alone, so the image holds no source tree.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels/ /tmp/wheels/
# The wheel with its worker extra: Faust, the CLI, Parquet export, Prometheus.
RUN pip install --no-cache-dir "$(ls /tmp/wheels/enginestream-*.whl)[worker]" \
 && rm -rf /tmp/wheels
# A fixed uid, so a mounted /data can be given to it from the host.
RUN useradd --system --uid 10001 --create-home --home-dir /home/enginestream enginestream \
 && mkdir /data \
 && chown enginestream:enginestream /data
ENV ENGINESTREAM_DATA_DIR=/data \
    ENGINESTREAM_WEB_HOST=0.0.0.0 \
    ENGINESTREAM_WEB_PORT=6066
VOLUME ["/data"]
WORKDIR /home/enginestream
USER enginestream
EXPOSE 6066
# Ready means partitions assigned and tables recovered (/health answers 503 until
# then); the slim image has no curl. Recovery from a long changelog takes a while.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ENGINESTREAM_WEB_PORT', '6066'), timeout=4)"]
ENTRYPOINT ["enginestream"]
CMD ["worker"]
