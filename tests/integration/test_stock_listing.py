"""A site's stock listed as it is read, on both databases: the same table, aligned as one by
column widths the database works out, and the same JSON, as the rows read whole."""

from trialkit import UTC_TZ, Trial

from lotrack.render.tables import aligned_lines, json_array, table, to_json
from lotrack.services.vial_views import stock_listing, stock_rows


def test_a_site_stock_read_in_batches_is_the_table_of_all_its_rows(database, make_user):
    trial = Trial.build(database, make_user)
    trial.lot("IPSEXO", vials=3)
    trial.lot("PLACEBO", vials=12)
    trial.vial_in_lot_state("on_hold")

    def both(session, actor, site, product, lot):
        whole = stock_rows(session, actor, site, product, lot, False, UTC_TZ)
        listing = stock_listing(session, actor, site, product, lot, with_widths=True,
                                batch_size=2)
        text = ("(no vial)" if listing.widths is None
                else "\n".join(aligned_lines(listing.rows, listing.widths)))
        streamed_json = "".join(json_array(stock_listing(
            session, actor, site, product, lot, with_widths=False, batch_size=2).rows))
        return whole, table(whole, empty="(no vial)"), to_json(whole), text, streamed_json

    for site, product, lot in (("SITE", None, None), (None, "PLACEBO", None),
                               ("SITE", None, "L001"), ("SITE", "NOPE", None)):
        whole, text, as_json, streamed, streamed_json = trial.act(
            "monitor.sun", lambda s, a, k=(site, product, lot): both(s, a, *k))
        assert streamed == text and streamed_json == as_json, (site, product, lot)
        if product != "NOPE":
            assert whole
