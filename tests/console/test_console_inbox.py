"""The console's inbox tiles count every shard this process is configured with, as
`hookline status` and the gauges do, not only those the high-water mark names."""

from __future__ import annotations

import re

from shared import inbox, inbox_shards
from tests.console.console_support import client_for, sign_in


def test_overview_counts_the_configured_shards_without_the_mark(make_rt):
    rt = make_rt(HOOKLINE_INBOX_SHARDS="4")
    for s in inbox_shards.shards(4, cluster=False):
        inbox.push(rt.redis, b"{}", s)
    # The mark is a key of its own: a failover can lose it while the lists survive
    # (on a Cluster it lives on one master); the settings still say 4.
    rt.redis.delete(inbox_shards.HIGH_WATER)
    assert inbox.depths(rt.redis, rt.settings.lease_seconds, 4).inbox == 4  # status's count
    page = sign_in(client_for(rt)).get("/console/overview/panel").get_data(as_text=True)
    depth = re.search(r"<b>(\d+)</b><span>inbox depth", page).group(1)
    assert depth == "4"
