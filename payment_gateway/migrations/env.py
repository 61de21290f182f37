from payment_gateway.config import SCHEMA, GatewaySettings
from payment_gateway.models import Base
from payment_gateway.sandbox import models as sandbox_models  # noqa: F401  (registers the tables)
from shared.migrations import run_env

run_env(Base.metadata, schema=SCHEMA, default_url=GatewaySettings().database_url)
