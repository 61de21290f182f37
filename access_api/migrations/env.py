from access_api.config import SCHEMA, AccessSettings
from access_api.models import Base
from shared.migrations import run_env

run_env(Base.metadata, schema=SCHEMA, default_url=AccessSettings().database_url)
