"""superseded items take the stricter sensitivity of their chain (issue 11 item 1)

Before this revision a correction that made an item `pv` (adverse-event wording in a visit or a
call-centre contact) left the superseded original `standard`, with the same free text. From now on
``record_interaction`` raises the superseded items when the correction is written (and audits it);
this revision does the same for the chains already stored: every item of a supersession chain takes
the strictest sensitivity of the chain. Only ``interactions.sensitivity`` changes.

Downgrade changes nothing: the raised values are right under the rule, and the former values of an
item are not needed by any earlier revision.

Revision ID: b7e1d4a9c2f0
Revises: 7e3a1c9d2b40
Create Date: 2026-12-03 13:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7e1d4a9c2f0'
down_revision = '7e3a1c9d2b40'
branch_labels = None
depends_on = None

# Least to most restricted, as crm.access.policy.SENSITIVITIES (frozen copy at this revision).
_STRICTER_FIRST = ("pv", "medical")
_ORDER = ("standard", "medical", "pv")


def upgrade():
    conn = op.get_bind()
    for target in _STRICTER_FIRST:
        weaker = list(_ORDER[:_ORDER.index(target)])
        # Raise along the chain in both directions until nothing changes (chains are short).
        while True:
            changed = 0
            for link in ("superseded_by_id", "supersedes_id"):
                result = conn.execute(
                    sa.text(
                        f"UPDATE interactions SET sensitivity = :target "
                        f"WHERE sensitivity IN :weaker AND {link} IN "
                        f"(SELECT id FROM interactions WHERE sensitivity = :target)"
                    ).bindparams(sa.bindparam("weaker", expanding=True)),
                    {"target": target, "weaker": weaker},
                )
                changed += result.rowcount or 0
            if not changed:
                break


def downgrade():
    pass
