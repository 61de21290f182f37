from notifier.config import SCHEMA, NotifierSettings
from notifier.models import Base
from shared.migrations import run_env

run_env(Base.metadata, schema=SCHEMA, default_url=NotifierSettings().database_url)
