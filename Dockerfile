# The forecaster (and, with another entrypoint, the sample app) for the compose stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first, pinned by constraints.txt, so a code change does not reinstall Prophet.
COPY pyproject.toml constraints.txt README.md ./
COPY forecaster ./forecaster
RUN pip install -c constraints.txt . \
    && useradd --system --home-dir /var/lib/forecaster --create-home forecaster
COPY examples ./examples

USER forecaster
VOLUME /var/lib/forecaster
EXPOSE 9095
ENTRYPOINT ["forecaster"]
CMD ["run", "-c", "/etc/forecaster/forecaster.yml"]
