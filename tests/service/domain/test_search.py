"""The pair's search text and the patterns a query becomes (domain.search)."""
from __future__ import annotations

import pytest

from service.domain.search import MAC_SECTION, NodeText, SearchPatterns, pair_search_text, search_patterns


def test_the_text_puts_both_macs_first_at_a_fixed_width_then_the_lower_cased_fields():
    text = pair_search_text("PBX.Acme.example", NodeText("C0:74:AD:45:3B:10", "Reception", "Berlin Mitte"),
                            NodeText("00:0B:82:A4:6E:BF", None, "Hamburg"))
    assert text == "c074ad453b10\n000b82a46ebf\npbx.acme.example\nreception\nberlin mitte\n\nhamburg"
    assert text[:MAC_SECTION] == "c074ad453b10\n000b82a46ebf"


def test_the_text_refuses_a_mac_that_is_not_canonical():
    with pytest.raises(ValueError):
        pair_search_text(None, NodeText("C0:74:AD"), NodeText("00:0B:82:A4:6E:BF"))


@pytest.mark.parametrize("q, expected", [
    ("Hamburg 1", SearchPatterns("%hamburg 1%", None)),
    ("  3B10 ", SearchPatterns("%3b10%", None)),  # bare digits: found in the MAC section by `anything`
    ("c0:74:AD", SearchPatterns("%c0:74:ad%", "%c074ad%")),
    ("c074.ad45", SearchPatterns("%c074.ad45%", "%c074ad45%")),
    ("10.0", SearchPatterns("%10.0%", "%100%")),
    (".com", SearchPatterns("%.com%", None)),  # "com" is no part of a MAC
    ("ham-burg", SearchPatterns("%ham-burg%", None)),
    (":", SearchPatterns("%:%", None, everything=True)),  # no digits left: every MAC contains ""
    ("x%z_\\", SearchPatterns("%x\\%z\\_\\\\%", None)),  # LIKE's wildcards are literal
    ("a\nb", SearchPatterns(None, None)),  # a newline separates fields: it matches none
    ("\ufb00", SearchPatterns("%\ufb00%", "%ff%")),  # the "ff" ligature upper-cases to FF, as before
])
def test_patterns(q, expected):
    assert search_patterns(q) == expected
