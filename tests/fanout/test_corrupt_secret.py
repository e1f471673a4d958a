"""Suspected in issue 22, confirmed: a stored endpoint secret that is not valid base64
(`binascii.Error` from the secret box) escaped the claim's error handling, so the whole
claimed batch, other endpoints' deliveries too, stayed stranded until its lease ran out,
every round. Now the bad delivery fails with its reason and the rest of the batch goes."""

from __future__ import annotations

from tests.fanout.fanout_helpers import apply_receipts, create_endpoint, deliver, rows


def test_a_corrupt_secret_fails_its_delivery_and_the_rest_of_the_batch_goes(
        api, frt, receiver):
    good = create_endpoint(api, receiver.url("/good"))
    bad = create_endpoint(api, receiver.url("/bad"))
    with frt.pool.connection() as conn:
        conn.execute("UPDATE endpoints SET secret = 'hlenc1:not*base64' WHERE id = %s",
                     (bad["id"],))
    apply_receipts(frt, "SENT", "DELIVERED")
    deliver(frt, until=lambda: len(receiver.requests("/good")) == 2 and rows(
        frt, "SELECT 1 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id "
             "WHERE d.endpoint_id = %s", bad["id"]))
    assert receiver.requests("/bad") == []
    [(_, status, *_)] = rows(frt, "SELECT id, status FROM deliveries WHERE endpoint_id = %s "
                                  "AND type = 'message.sent'", good["id"])
    assert status == "succeeded"
    errors = rows(frt, "SELECT a.error FROM delivery_attempts a JOIN deliveries d "
                       "ON d.id = a.delivery_id WHERE d.endpoint_id = %s", bad["id"])
    assert errors and all("cannot sign" in e and "corrupt" in e for (e,) in errors), errors
