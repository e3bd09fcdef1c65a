# The enginestream worker / CLI image: `docker compose up` runs it next to Kafka.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip install --no-cache-dir .
ENV ENGINESTREAM_DATA_DIR=/data \
    ENGINESTREAM_WEB_HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 6066
ENTRYPOINT ["enginestream"]
CMD ["worker"]
