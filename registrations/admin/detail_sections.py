"""The registration page's read-only sections: references, risk, failed validations, links, runs, payload."""

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .. import selectors
from ..mapping import REFERENCES
from . import rendering
from .per_request import pii


class DetailSectionsMixin:
    """Display methods named in AppRegistrationAdmin.fieldsets."""

    def _reference(self, obj, api_key, field):
        ref_id = getattr(obj, field)
        name = ((obj.populated or {}).get(api_key) or {}).get("name")
        if not ref_id:
            return rendering.EMPTY
        return format_html("{} <code>{}</code>", name, ref_id) if name else format_html("<code>{}</code>", ref_id)

    @admin.display(description="Project")
    def project(self, obj):
        name = ((obj.populated or {}).get("project") or {}).get("name")
        return rendering.project_label(obj.project_id, name if isinstance(name, str) else None)

    @admin.display(description="Detail fetch")
    def details_backlog(self, obj):
        """Whether Verifik's detail endpoint still owes this registration a fetch, and why it failed."""
        if not obj.details_pending:
            return "Up to date"
        parts = ["Pending"]
        if obj.details_failures:
            parts.append(f"{obj.details_failures} failed attempt{'s' if obj.details_failures != 1 else ''}")
        if obj.details_retry_at and obj.details_retry_at > timezone.now():
            parts.append(f"backing off until {rendering.when(obj.details_retry_at)}")
        text = ", ".join(parts)
        if obj.details_error:  # Verifik's words may quote the applicant: free text, masked as such
            return format_html('{}<br><span class="vf-stale">{}</span>', text, pii(obj).text(obj.details_error, obj))
        return text

    @admin.display(description="Personal data")
    def erased(self, obj):
        """Erased or kept; the `purge` event in the audit trail says by whom and why."""
        if not obj.erased_at:
            return "Kept"
        return format_html("{} on {}", rendering.tag("Erased", "muted"), rendering.when(obj.erased_at))

    @admin.display(description="Project flow")
    def project_flow(self, obj):
        return self._reference(obj, "projectFlow", "project_flow_id")

    @admin.display(description="At Verifik")
    def deleted_at_verifik(self, obj):
        return rendering.tag("Deleted at Verifik", "danger") if obj.deleted else "Present"

    @admin.display(description="Red flag details")
    def red_flags_table(self, obj):
        if obj.red_flags_details is None:
            return rendering.EMPTY
        return rendering.value_table(pii(obj).payload(obj.red_flags_details, obj))

    def _failed_table(self, obj, kind):
        return rendering.failed_items_table(pii(obj).payload(getattr(obj, f"failed_{kind}_validations"), obj))

    @admin.display(description="Email")
    def failed_email_table(self, obj):
        return self._failed_table(obj, "email")

    @admin.display(description="Phone")
    def failed_phone_table(self, obj):
        return self._failed_table(obj, "phone")

    @admin.display(description="Biometric")
    def failed_biometric_table(self, obj):
        return self._failed_table(obj, "biometric")

    @admin.display(description="Document")
    def failed_document_table(self, obj):
        return self._failed_table(obj, "document")

    @admin.display(description="References")
    def linked_records(self, obj):
        rows = []
        shown = pii(obj).payload(obj.populated or {}, obj)
        for api_key, field in REFERENCES.items():
            ref_id = getattr(obj, field)
            populated = shown.get(api_key) if isinstance(shown, dict) else None
            if ref_id is None and populated is None:
                continue
            body = rendering.value_table(populated) if populated else rendering.muted("not populated")
            rows.append((api_key, ref_id or "—", body))
        if not rows:
            return rendering.EMPTY
        return format_html(
            '<table class="vf-table vf-linked"><thead><tr><th>Record</th><th>Id</th>'
            "<th>What Verifik sent</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join("", '<tr><th scope="row">{}</th><td><code>{}</code></td><td>{}</td></tr>', rows),
        )

    @admin.display(description="Notes")
    def notes_text(self, obj):
        return rendering.multiline(pii(obj).text(obj.notes, obj))

    @admin.display(description="Recent refreshes")
    def recent_runs(self, obj):
        runs = selectors.recent_runs_for(obj.verifik_id)
        if not runs:
            return rendering.muted("No refresh of this registration yet.")
        rows = (
            (
                rendering.run_link(run),
                rendering.badge(run.get_outcome_display(), run.outcome),
                rendering.when(run.started_at),
                run.get_trigger_display(),
                run.user or "—",
                pii(obj).text(run.error, obj) or "",
            )
            for run in runs
        )
        return format_html(
            '<table class="vf-table"><tbody>{}</tbody></table>',
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description="Payload")
    def raw_payload(self, obj):
        return rendering.pretty_json(pii(obj).payload({"raw": obj.raw, "populated": obj.populated}, obj))
