"""Import every feature's models so the metadata (and Alembic) sees all tables."""

from crm.audit.models import AuditRecord, AuditVerification  # noqa: F401
from crm.auth.models import ApiToken, LoginAttempt, User, WebSession  # noqa: F401
from crm.callcentre.models import AdverseEventCase, Contact, MedicalInquiry  # noqa: F401
from crm.campaigns.models import Audience, Campaign, CampaignMessage, EmailEvent, EmailTemplate  # noqa: F401
from crm.consent.models import ConsentEvent, ConsentReview, ConsentState, ConsentToken, Notice  # noqa: F401
from crm.events.models import (  # noqa: F401
    Attendance,
    DisclosureConsent,
    Event,
    Invitation,
    Registration,
    TransferCap,
    TransferOfValue,
)
from crm.guardrails.models import GuardrailRule  # noqa: F401
from crm.hcps.models import (  # noqa: F401
    HCO,
    HCP,
    Affiliation,
    HCPIdentifier,
    HCPTerritoryAssignment,
    Territory,
    UserTerritoryAssignment,
)
from crm.integrations.erp.models import ErpStubOrder, ErpStubProduct, ErpStubStock  # noqa: F401
from crm.integrations.eventplatform.models import UnmatchedAttendanceRow  # noqa: F401
from crm.integrations.masterdata.models import ImportFingerprint, ImportRowError, ImportRun  # noqa: F401
from crm.jobs.models import Job  # noqa: F401
from crm.mail.models import MailOutbox  # noqa: F401
from crm.orders.models import Order, OrderAttempt, OrderEvent, OrderLine, OrderOutbox  # noqa: F401
from crm.plans.models import EngagementPlan, PlanTarget, PlanTerritory  # noqa: F401
from crm.products.models import Product, SampleLot  # noqa: F401
from crm.samples.models import (  # noqa: F401
    SampleConsignment,
    SampleConsignmentLine,
    SampleCount,
    SampleCountLine,
    SampleDiscrepancy,
    SampleInventory,
    SampleMovement,
)
from crm.segments.models import Segment  # noqa: F401
from crm.speakers.models import EventSpeaker, SpeakerQualification  # noqa: F401
from crm.surveys.models import Survey, SurveyRecipient, SurveyResponse  # noqa: F401
from crm.timeline.models import Interaction, InteractionParticipant, InteractionProduct, SensitiveRead  # noqa: F401
from crm.visit_plans.models import VisitPlan, VisitPlanReschedule  # noqa: F401
from crm.visits.models import Visit, VisitAttendee, VisitSample  # noqa: F401
