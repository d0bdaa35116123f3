"""``flask --app wsgi crm ...``: one group, a sub-group or command per domain."""

from __future__ import annotations

from flask.cli import AppGroup

crm_cli = AppGroup("crm", help="Pharma CRM administration commands.")


def _register() -> None:
    from crm.auth.cli import territories_cli, users_cli

    crm_cli.add_command(territories_cli)
    crm_cli.add_command(users_cli)

    from crm.audit.cli import audit_cli
    from crm.security.cli import keys_cli

    crm_cli.add_command(audit_cli)
    crm_cli.add_command(keys_cli)

    from crm import demo

    demo.register(crm_cli)

    from crm.consent.cli import consent_cli
    from crm.hcps.cli import hcps_cli

    crm_cli.add_command(consent_cli)
    crm_cli.add_command(hcps_cli)

    # events and the call centre: `crm reports transfers`, `crm import attendance|contacts`
    from crm.events.cli import reports_cli
    from crm.integrations.callcentre import cli as _contacts_cli  # noqa: F401  (adds `import contacts`)
    from crm.integrations.eventplatform import cli as _attendance_cli  # noqa: F401  (adds `import attendance`)
    from crm.integrations.masterdata.cli import import_cli

    crm_cli.add_command(reports_cli)
    crm_cli.add_command(import_cli)

    from crm.orders.cli import erp_cli

    crm_cli.add_command(erp_cli)

    from crm.products.cli import products_cli

    crm_cli.add_command(products_cli)

    from crm.campaigns.cli import campaigns_cli

    crm_cli.add_command(campaigns_cli)

    from crm.mail.cli import mail_cli

    crm_cli.add_command(mail_cli)

    from crm.surveys.cli import surveys_cli

    crm_cli.add_command(surveys_cli)
    from crm.plans.cli import plans_cli

    crm_cli.add_command(plans_cli)
    from crm.samples.cli import samples_cli

    crm_cli.add_command(samples_cli)
    from crm.jobs.cli import queue_cli

    crm_cli.add_command(queue_cli)
    from crm.visit_plans.cli import visit_plans_cli

    crm_cli.add_command(visit_plans_cli)


_register()
