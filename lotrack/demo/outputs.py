"""What the demo leaves in its folder: the documents lotrack produces, written through the
same services and renderers as the `lotrack report ...` commands."""

from __future__ import annotations

from sqlalchemy import select

from lotrack.demo.core import SITE_TZ, Demo
from lotrack.models import Lot
from lotrack.services import accountability, auth, documents


def write_outputs(demo: Demo) -> None:
    from lotrack.render.pdf.accountability import (
        write_accountability_csv,
        write_accountability_pdf,
    )
    from lotrack.render.pdf.coa import write_coa

    coa_dir = demo.out / "coa"

    def issue(session):
        reader = auth.find_user(session, "qa.lee")
        prov = documents.provenance(session, reader)
        numbers = session.execute(select(Lot.lot_number).order_by(Lot.lot_number)).scalars()
        coas = {n: documents.certificate_of_analysis(session, reader, n, None, SITE_TZ)
                for n in numbers}
        return prov, coas, accountability.accountability(session, reader, None)

    prov, coas, darf = demo.read(issue)
    for number, content in coas.items():
        write_coa(coa_dir / f"{number}-coa.pdf", content, prov, SITE_TZ,
                  {"report": "coa", "params": {"lot": number, "product": None}})
    write_accountability_pdf(demo.out / "accountability.pdf", darf, prov, SITE_TZ,
                             {"report": "accountability", "params": {"lot": None, "product": None}})
    write_accountability_csv(demo.out / "accountability.csv", darf)
    demo.say(f"Wrote {len(coas)} certificates of analysis (coa/), the drug accountability "
             f"record (accountability.pdf, accountability.csv) to {demo.out}/")
    labels = demo.out / "labels"
    demo.say(f"Labels (labels/): vial sheets of {len(list(labels.glob('vials-*.pdf')))} lots, "
             f"{len(list(labels.glob('box-*.pdf')))} box labels, "
             f"{len(list((labels / 'doses').glob('*.pdf')))} patient-dose labels.")
