"""Import every feature's models so the metadata (and Alembic) sees all tables."""

from crm.audit.models import AuditRecord  # noqa: F401
from crm.auth.models import ApiToken, LoginAttempt, User, WebSession  # noqa: F401
from crm.hcps.models import (  # noqa: F401
    HCO,
    HCP,
    Affiliation,
    HCPIdentifier,
    HCPTerritoryAssignment,
    Territory,
    UserTerritoryAssignment,
)
from crm.products.models import Product  # noqa: F401
from crm.timeline.models import Interaction, InteractionParticipant, InteractionProduct, SensitiveRead  # noqa: F401
from crm.visits.models import Visit, VisitAttendee, VisitSample  # noqa: F401
