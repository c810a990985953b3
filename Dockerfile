FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini gunicorn.conf.py ./
COPY service ./service
COPY workers ./workers
COPY simulator ./simulator
COPY migrations ./migrations
RUN pip install --no-cache-dir -e . && useradd --system ucmha
USER ucmha
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "service.wsgi:create_app()"]
