"""`lotrack settings ...`: site-wide settings kept in the database (the site time zone)."""

from __future__ import annotations

import click

from lotrack.cli.context import App, emit, output_options, pass_app


@click.group()
def settings() -> None:
    """Site-wide settings kept in the database, the same for every workstation."""


@settings.command()
@output_options
@pass_app
def show(app: App, as_json: bool) -> None:
    """Show the site time zone recorded in the database, and this workstation's --tz /
    LOTRACK_TZ beside it.

    Example: lotrack settings show --json
    """
    from lotrack.render.tables import record, site_time
    from lotrack.services import site_settings

    recorded = app.read(lambda s, actor: site_settings.recorded_zone(s))
    configured = app.settings
    data: dict[str, object] = {
        "site_time_zone": recorded.zone.key if recorded else configured.site_tz.key,
        "recorded": recorded is not None,
        "changed_at": recorded.changed_at if recorded else None,
        "changed_by": recorded.changed_by if recorded else None,
        "workstation_time_zone": configured.site_tz.key if configured.site_tz_from else None,
        "workstation_time_zone_from": configured.site_tz_from,
        "conflict": app.zone_conflict(),
    }

    def text() -> str:
        if recorded:
            zone = f"{recorded.zone.key} (recorded in the database)"
            changed = f"{site_time(recorded.changed_at, recorded.zone)} by {recorded.changed_by}"
        else:
            source = configured.site_tz_from or "the default"
            zone = (f"{configured.site_tz.key} (none recorded in the database: from {source}; "
                    "an administrator records it with `lotrack settings set-tz`)")
            changed = None
        fields = {"site time zone": zone, "changed": changed}
        if configured.site_tz_from:
            fields[configured.site_tz_from] = configured.site_tz.key
        if data["conflict"]:
            fields["conflict"] = data["conflict"]
        return record({k: v for k, v in fields.items() if v is not None})

    emit(data, as_json, text)


@settings.command("set-tz")
@click.argument("zone")
@click.option("--reason", help="Why the zone changes (required once one is recorded).")
@pass_app
def set_tz(app: App, zone: str, reason: str | None) -> None:
    """Record the site time zone ZONE (an IANA name) in the database; administrators.

    Every workstation then reads times typed without an offset, expiry days and
    post-operative days in it; a workstation whose --tz / LOTRACK_TZ says otherwise is
    refused until it agrees or unsets it.

    Example: lotrack settings set-tz Asia/Shanghai --reason "site moved to Shanghai time"
    """
    from lotrack.services import site_settings

    setting = app.run(lambda s, actor: site_settings.set_site_time_zone(s, actor, zone, reason))
    click.echo(f"Site time zone recorded: {setting.value}.")
