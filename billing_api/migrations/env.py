from billing_api.config import SCHEMA, BillingSettings
from billing_api.models import Base
from shared.migrations import run_env

run_env(Base.metadata, schema=SCHEMA, default_url=BillingSettings().database_url)
