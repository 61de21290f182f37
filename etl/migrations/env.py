from etl.config import SCHEMA, EtlSettings
from etl.models import Base
from shared.migrations import run_env

run_env(Base.metadata, schema=SCHEMA, default_url=EtlSettings().database_url)
