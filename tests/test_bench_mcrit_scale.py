"""Pure helpers of bench.mcrit_scale (the benchmark itself needs MCRIT and the corpus)."""

from __future__ import annotations

from bench.mcrit_scale import markdown_table, merge_xcfg, ratio, select_prefix


def test_select_prefix_reaches_target() -> None:
    assert select_prefix([3, 4, 5], 7) == 2
    assert select_prefix([3, 4, 5], 8) == 3
    assert select_prefix([3, 4, 5], 1) == 1
    assert select_prefix([3, 4, 5], 100) == 3  # never reached: all
    assert select_prefix([], 5) == 0


def test_merge_xcfg_keeps_order_skips_taken_offsets_and_cuts() -> None:
    a = {"16": "a16", "32": "a32"}
    b = {"32": "b32", "48": "b48", "64": "b64"}
    assert merge_xcfg([a, b], 10) == {"16": "a16", "32": "a32", "48": "b48", "64": "b64"}
    assert list(merge_xcfg([a, b], 3)) == ["16", "32", "48"]


def test_ratio_and_table() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 0.0) is None
    point = {"mcrit": {"n_functions": 10000, "ingest_s": 1.0, "query_s": 2.0, "query_match_s": 1.0,
                       "peak_rss_mib": 300.0},
             "kinship": {"n_functions": 9000, "build_s": 0.5, "query_s": 0.1,
                         "peak_rss_mib": 100.0},
             "ratio_query_s": 20.0, "ratio_query_match_s": 10.0, "ratio_peak_rss": 3.0}
    table = markdown_table([point])
    assert ("| 10,000 / 9,000 | 1.0 | 2.0 (1.0) | 300.0 | 0.5 | 0.1 | 100.0 | 20.0 (10.0) "
            "| 3.0 |") in table
