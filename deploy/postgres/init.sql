-- Runs once, when the postgres volume is first initialised (the official image
-- skips /docker-entrypoint-initdb.d on an existing data directory).
-- POSTGRES_DB already created "creditgate"; LiteLLM gets its own database so
-- its Prisma migrations never touch creditgate's schema.
CREATE DATABASE litellm;
