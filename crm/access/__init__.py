"""Who sees and writes what: SPEC section 4 as one table, and pure functions that explain themselves."""

from crm.access.policy import (  # noqa: F401
    ROLES,
    SENSITIVITIES,
    Decision,
    Level,
    Role,
    Viewer,
    can_see_consent_evidence,
    contact_data_decision,
    item_decision,
    mask_address,
    mask_email,
    mask_phone,
    require_write,
    write_decision,
)
