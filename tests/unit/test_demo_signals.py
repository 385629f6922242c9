"""The demo's signal generator (issue #18 item 9): deterministic from the seed, every profile
present from ten companies on, both CRMs' copies of a company given the same numbers, and every
row valid for the signals API."""

from __future__ import annotations

from datetime import date

from app.demo_signals.generator import PROFILES, DemoAccount, assign_profiles, generate
from app.domain.signal_rows import validate_rows

TODAY = date(2026, 3, 15)


def accounts(n: int) -> list[DemoAccount]:
    out = []
    for i in range(n):
        domain = f"company{i}.example.com"
        out.append(DemoAccount("sf_id", f"001{i:015d}", domain, 20 + i))
        out.append(DemoAccount("hs_id", str(7000 + i), domain, 20 + i))
    return out


def test_the_same_seed_gives_the_same_rows_and_another_seed_others() -> None:
    assert generate(accounts(15), 42, TODAY) == generate(accounts(15), 42, TODAY)
    assert generate(accounts(15), 42, TODAY) != generate(accounts(15), 43, TODAY)


def test_every_profile_from_ten_companies_on() -> None:
    profiles = assign_profiles((f"c{i}.example.com" for i in range(10)), seed=7)
    assert sorted(profiles.values()) == sorted(PROFILES)
    many = assign_profiles((f"c{i}.example.com" for i in range(400)), seed=7)
    assert set(many.values()) == set(PROFILES)


def test_both_copies_of_a_company_get_the_same_numbers() -> None:
    rows = generate(accounts(12), 42, TODAY)
    for kind, kind_rows in rows.items():
        sf = [
            {k: v for k, v in r.items() if k not in ("sf_id", "external_id")}
            for r in kind_rows
            if "sf_id" in r
        ]
        hs = [
            {k: v for k, v in r.items() if k not in ("hs_id", "external_id")}
            for r in kind_rows
            if "hs_id" in r
        ]
        assert sf == hs, kind


def test_every_row_is_valid_for_the_signals_api() -> None:
    rows = generate(accounts(40), 42, TODAY)
    assert all(rows[k] for k in rows)
    for kind, kind_rows in rows.items():
        good, errors = validate_rows(kind, kind_rows)
        assert errors == [], (kind, errors[:2])
        assert len(good) == len(kind_rows)


def test_the_feeds_show_what_health_must_show() -> None:
    rows = generate(accounts(40), 42, TODAY)
    assert any(r.get("escalated") and r["priority"] == "P1" for r in rows["tickets"])
    assert any(r["respondent_role"] == "decision_maker" and r["score"] <= 6 for r in rows["nps"])
    assert any("paid_on" not in r and r["due_on"] < "2026-01-15" for r in rows["invoices"])
    assert any(r["active_users_30d"] == 0 for r in rows["usage"])  # dormant
    assert any(r["two_way"] for r in rows["touchpoints"])
