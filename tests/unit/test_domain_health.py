"""Health score rules (domain.md 4): each table row's id names the section it checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.components import (
    score_engagement,
    score_payment,
    score_relationship,
    score_sentiment,
    score_support,
    score_usage,
    score_value,
)
from app.domain.config import BandsConfig, CapsConfig, ScoringConfig, Weights
from app.domain.health import (
    MODEL_VERSION,
    band_of,
    classify_loyalty,
    compute_health,
    compute_trend,
)
from app.domain.reasons import Reason, join_reasons
from app.domain.signals import (
    ContactSignal,
    EngagementSignals,
    HealthInput,
    Milestone,
    NpsAnswer,
    PaymentSignals,
    SnapshotPoint,
    SupportSignals,
    SurveyAnswer,
    UsageSignals,
    ValueSignals,
)
from app.domain.values import round_half_up

TODAY = date(2026, 12, 6)
CFG = ScoringConfig()


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def usage(**kw: object) -> UsageSignals:
    base: dict[str, object] = {
        "observed_on": TODAY,
        "active_users_30d": 40,
        "logins_30d": 400,
        "licensed_seats": 40,
        "key_features_used_30d": 6,
        "key_features_defined": 10,
        "last_login_on": TODAY,
    }
    base.update(kw)
    return UsageSignals(**base)  # type: ignore[arg-type]


def account(**kw: object) -> HealthInput:
    base: dict[str, object] = {"tier": "high", "customer_since_on": ago(400)}
    base.update(kw)
    return HealthInput(**base)  # type: ignore[arg-type]


def healthy() -> HealthInput:
    """Every feed present and perfect."""
    return account(
        usage=usage(),
        engagement=EngagementSignals(last_two_way_touch_on=ago(10)),
        nps=(NpsAnswer(10, ago(30), "c1", "decision_maker"),),
        surveys=(SurveyAnswer("csat", 5, ago(10)),),
        support=SupportSignals(tickets_30d=1, tickets_90d=3, last_ticket_on=ago(5)),
        contacts=(
            ContactSignal(frozenset({"champion"}), ago(10)),
            ContactSignal(frozenset({"decision_maker"}), ago(20)),
        ),
        value=ValueSignals(criteria_met=3),
        payment=PaymentSignals(observed_on=ago(1)),
    )


# --- 4.3 component scores -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signals", "expected", "flags"),
    [
        pytest.param(usage(), 100.0, (), id="4.3-usage-all-at-target"),
        # seat 10/40=0.25 -> lin(.25,.2,.8)=8.33; freq 100/10/4.29=2.33 -> 100; breadth .6 -> 100
        pytest.param(
            usage(active_users_30d=10, logins_30d=100),
            0.4 * (100 * 0.05 / 0.6) + 30 + 30,
            (),
            id="4.3-usage-wmean-seat-freq-breadth",
        ),
        pytest.param(
            usage(licensed_seats=None, key_features_defined=None),
            100.0,
            (),
            id="4.3-usage-missing-subscores-left-out-not-zero",
        ),
        pytest.param(usage(last_login_on=ago(14)), 0.0, ("dormant",), id="4.3-usage-dormant-14d"),
        pytest.param(usage(last_login_on=ago(13)), 100.0, (), id="4.3-usage-13d-not-dormant"),
        pytest.param(
            usage(active_users_30d=0, logins_30d=0, last_login_on=None),
            0.0,
            ("dormant",),
            id="4.3-usage-no-login-in-30d-is-dormant",
        ),
        pytest.param(
            usage(active_users_30d=35, logins_30d=350, prev_active_users_30d=50),
            50.0,
            ("usage_drop",),
            id="4.3-usage-drop-30pct-caps-50",
        ),
        pytest.param(
            usage(active_users_30d=36, logins_30d=360, prev_active_users_30d=50),
            100.0,
            (),
            id="4.3-usage-drop-28pct-no-cap",
        ),
        pytest.param(
            usage(active_users_30d=2, logins_30d=20, prev_active_users_30d=4),
            60.0,  # seat 0, freq 100, breadth 100: not capped at 50
            (),
            id="4.3-usage-drop-needs-5-prev-users",
        ),
    ],
)
def test_usage_component(signals: UsageSignals, expected: float, flags: tuple[str, ...]) -> None:
    c = score_usage(account(usage=signals), TODAY, CFG)
    assert c.value == pytest.approx(expected)
    assert c.flags == flags


@pytest.mark.parametrize(
    ("inp", "status", "flag"),
    [
        pytest.param(account(usage=None), "missing", None, id="4.3-usage-no-feed-missing"),
        pytest.param(
            account(usage=usage(observed_on=ago(8))),
            "stale",
            "stale_usage",
            id="4.4-usage-8d-stale",
        ),
        pytest.param(
            account(usage=usage(), customer_since_on=ago(29)),
            "skipped",
            "new_account",
            id="4.3-usage-grace-30d",
        ),
    ],
)
def test_usage_without_a_value(inp: HealthInput, status: str, flag: str | None) -> None:
    c = score_usage(inp, TODAY, CFG)
    assert c.value is None
    assert c.status == status
    assert c.flags == ((flag,) if flag else ())


@pytest.mark.parametrize(
    ("tier", "days", "expected", "no_touch"),
    [
        pytest.param("high", 90, 100.0, False, id="4.3-engagement-r1-100"),
        pytest.param("high", 135, 60.0, True, id="4.3-engagement-r1.5-60"),
        pytest.param("high", 180, 30.0, True, id="4.3-engagement-r2-30"),
        pytest.param("high", 181, 0.0, True, id="4.3-engagement-beyond-r2-0"),
        pytest.param("key", 31, 60.0, True, id="3.4-engagement-key-cadence-30"),
        pytest.param("tech", 300, 100.0, False, id="3.4-engagement-tech-cadence-365"),
    ],
)
def test_engagement_recency(tier: str, days: int, expected: float, no_touch: bool) -> None:
    inp = account(tier=tier, engagement=EngagementSignals(last_two_way_touch_on=ago(days)))
    c = score_engagement(inp, TODAY, CFG)
    assert c.value == pytest.approx(expected)
    assert ("no_touch" in c.flags) is no_touch


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        pytest.param(ago(60), 100.0, id="4.3-engagement-never-touched-young-100"),
        pytest.param(ago(91), 0.0, id="4.3-engagement-never-touched-old-0"),
        pytest.param(None, 0.0, id="4.3-engagement-never-touched-age-unknown-0"),
    ],
)
def test_engagement_no_touch_ever(since: date | None, expected: float) -> None:
    inp = account(customer_since_on=since, engagement=EngagementSignals())
    assert score_engagement(inp, TODAY, CFG).value == expected


def test_engagement_attend_and_respond_weighted_with_minimum_counts() -> None:
    # 4.3: attend counts from 2 scheduled, respond from 3 sent; recency .6, attend .2, respond .2
    sig = EngagementSignals(ago(10), 4, 2, 10, 1)  # attend .5 -> 0; respond .1 -> 0
    c = score_engagement(account(engagement=sig), TODAY, CFG)
    assert c.value == pytest.approx(60.0)
    few = EngagementSignals(ago(10), 1, 0, 2, 0)  # below the minimum counts: left out
    assert score_engagement(account(engagement=few), TODAY, CFG).value == 100.0


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        pytest.param((NpsAnswer(9, ago(1), "a"),), 100.0, id="4.3-nps-promoter-100"),
        pytest.param((NpsAnswer(7, ago(1), "a"),), 60.0, id="4.3-nps-passive-60"),
        pytest.param((NpsAnswer(6, ago(1), "a"),), 30.0, id="4.3-nps-detractor-5-per-point"),
        pytest.param((NpsAnswer(0, ago(1), "a"),), 0.0, id="4.3-nps-zero"),
        pytest.param(
            (NpsAnswer(3, ago(100), "a"), NpsAnswer(10, ago(5), "a")),
            100.0,
            id="4.3-nps-latest-answer-per-contact",
        ),
        pytest.param(
            (NpsAnswer(10, ago(5), "a", "champion"), NpsAnswer(7, ago(5), "b", "user")),
            (2 * 100 + 60) / 3,
            id="4.3-nps-key-roles-count-twice",
        ),
        pytest.param(
            (NpsAnswer(10, ago(366), "a"), NpsAnswer(7, ago(5), "b")),
            60.0,
            id="4.4-nps-older-than-365d-dropped",
        ),
    ],
)
def test_sentiment_nps(answers: tuple[NpsAnswer, ...], expected: float) -> None:
    assert score_sentiment(account(nps=answers), TODAY, CFG).value == pytest.approx(expected)


def test_sentiment_wmean_csat_ces_and_detractor_flag() -> None:
    # 4.3: nps .60, csat .25, ces .15; csat 4 on 1-5 = 75; ces 7 on 1-7 = 100 (low effort)
    inp = account(
        nps=(NpsAnswer(4, ago(20), "cfo", "decision_maker"),),
        surveys=(SurveyAnswer("csat", 4, ago(10)), SurveyAnswer("ces", 7, ago(10))),
    )
    c = score_sentiment(inp, TODAY, CFG)
    assert c.value == pytest.approx(0.6 * 20 + 0.25 * 75 + 0.15 * 100)
    assert c.flags == ("detractor",)
    assert c.inputs["detractor_nps"] == 4


@pytest.mark.parametrize(
    ("answer", "flag"),
    [
        pytest.param(NpsAnswer(5, ago(170), "x", "exec"), True, id="4.3-detractor-exec-170d"),
        pytest.param(NpsAnswer(5, ago(190), "x", "exec"), False, id="4.3-detractor-only-180d"),
        pytest.param(NpsAnswer(5, ago(10), "x", "user"), False, id="4.3-detractor-only-key-roles"),
        pytest.param(NpsAnswer(7, ago(10), "x", "champion"), False, id="4.3-detractor-max-6"),
    ],
)
def test_detractor_flag(answer: NpsAnswer, flag: bool) -> None:
    assert ("detractor" in score_sentiment(account(nps=(answer,)), TODAY, CFG).flags) is flag


def test_sentiment_all_stale_is_stale_not_zero() -> None:  # 4.4
    inp = account(nps=(NpsAnswer(2, ago(400), "a"),), surveys=(SurveyAnswer("csat", 1, ago(200)),))
    c = score_sentiment(inp, TODAY, CFG)
    assert c.value is None
    assert c.status == "stale"
    assert set(c.flags) == {"stale_nps", "stale_csat"}


@pytest.mark.parametrize(
    ("sig", "expected", "spike"),
    [
        pytest.param(
            SupportSignals(), 100.0, False, id="4.3-support-quiet-100-silence-not-penalised"
        ),
        pytest.param(
            SupportSignals(oldest_open_p1_or_escalation_on=ago(8)),
            60.0,
            False,
            id="4.3-support-p1-open-8d",
        ),
        pytest.param(
            SupportSignals(oldest_open_p1_or_escalation_on=ago(7)),
            100.0,
            False,
            id="4.3-support-p1-7d-ok",
        ),
        pytest.param(
            SupportSignals(escalations_90d=1), 80.0, False, id="4.3-support-one-escalation"
        ),
        pytest.param(
            SupportSignals(escalations_90d=5), 60.0, False, id="4.3-support-escalations-max-40"
        ),
        pytest.param(
            SupportSignals(tickets_30d=6, tickets_prior_90d=9, tickets_90d=6),
            70.0,
            True,
            id="4.3-support-spike-double-prior-mean",
        ),
        pytest.param(
            SupportSignals(tickets_30d=5, tickets_prior_90d=9, tickets_90d=5),
            100.0,
            False,
            id="4.3-support-no-spike-below-double",
        ),
        pytest.param(
            SupportSignals(tickets_30d=1, tickets_90d=5, fcr_90d=0.4),
            90.0,
            False,
            id="4.3-support-low-fcr",
        ),
        pytest.param(
            SupportSignals(
                oldest_open_p1_or_escalation_on=ago(30),
                escalations_90d=3,
                tickets_30d=9,
                tickets_90d=12,
                fcr_90d=0.1,
            ),
            0.0,
            True,
            id="4.3-support-floor-0",
        ),
    ],
)
def test_support_component(sig: SupportSignals, expected: float, spike: bool) -> None:
    c = score_support(account(support=sig), TODAY, CFG)
    assert c.value == pytest.approx(expected)
    assert ("ticket_spike" in c.flags) is spike


CHAMP = frozenset({"champion"})
DM = frozenset({"decision_maker"})


@pytest.mark.parametrize(
    ("contacts", "expected", "left"),
    [
        pytest.param((), None, False, id="4.3-relationship-no-contacts-missing"),
        pytest.param(
            (ContactSignal(CHAMP, ago(90)), ContactSignal(DM, ago(180))),
            100.0,
            False,
            id="4.3-relationship-all-three",
        ),
        pytest.param(
            (ContactSignal(CHAMP, ago(91)),), 0.0, False, id="4.3-relationship-champion-90d"
        ),
        pytest.param(
            (ContactSignal(frozenset(), ago(10)), ContactSignal(frozenset(), ago(100))),
            30.0,
            False,
            id="4.3-relationship-two-contacts",
        ),
        pytest.param(
            (ContactSignal(DM, ago(10)),), 30.0, False, id="4.3-relationship-decision-maker"
        ),
        pytest.param(
            (
                ContactSignal(CHAMP, ago(100), active=False, left_on=ago(30)),
                ContactSignal(DM, ago(10)),
                ContactSignal(frozenset(), ago(10)),
            ),
            20.0,
            True,
            id="4.3-relationship-champion-left-caps-20",
        ),
        pytest.param(
            (
                ContactSignal(CHAMP, ago(100), active=False, left_on=ago(91)),
                ContactSignal(DM, ago(10)),
            ),
            30.0,
            False,
            id="4.3-relationship-champion-left-91d-ago-no-flag",
        ),
    ],
)
def test_relationship_component(
    contacts: tuple[ContactSignal, ...], expected: float | None, left: bool
) -> None:
    c = score_relationship(account(contacts=contacts), TODAY, CFG)
    assert c.value == expected
    assert ("champion_left" in c.flags) is left


@pytest.mark.parametrize(
    ("sig", "expected", "overdue"),
    [
        pytest.param(ValueSignals(onboarding=True), 100.0, False, id="4.3-value-none-due-100"),
        pytest.param(
            ValueSignals(
                onboarding=True,
                milestones=(
                    Milestone(ago(20), ago(21)),
                    Milestone(ago(20), ago(10)),
                    Milestone(ago(15)),
                    Milestone(TODAY + timedelta(days=5)),
                ),
            ),
            100 * (1 + 0.5) / 3,
            True,
            id="4.3-value-on-time-late-open-overdue-15d",
        ),
        pytest.param(
            ValueSignals(onboarding=True, milestones=(Milestone(ago(14)),)),
            0.0,
            False,
            id="4.3-value-open-14d-not-yet-overdue",
        ),
        pytest.param(
            ValueSignals(criteria_met=1, criteria_partly_met=1, criteria_not_met=2),
            100 * 1.5 / 4,
            False,
            id="4.3-value-success-criteria",
        ),
        pytest.param(ValueSignals(), None, False, id="4.3-value-no-criteria-missing"),
    ],
)
def test_value_component(sig: ValueSignals, expected: float | None, overdue: bool) -> None:
    c = score_value(account(value=sig), TODAY, CFG)
    assert c.value == (pytest.approx(expected) if expected is not None else None)
    assert ("onboarding_overdue" in c.flags) is overdue


@pytest.mark.parametrize(
    ("due", "expected", "flag"),
    [
        pytest.param((), 100.0, False, id="4.3-payment-nothing-open"),
        pytest.param((TODAY,), 100.0, False, id="4.3-payment-due-today-0d"),
        pytest.param((ago(30),), 60.0, False, id="4.3-payment-30d"),
        pytest.param((ago(31), ago(2)), 30.0, False, id="4.3-payment-max-31d"),
        pytest.param((ago(60),), 30.0, False, id="4.3-payment-60d"),
        pytest.param((ago(61),), 0.0, True, id="4.3-payment-61d-overdue-flag"),
    ],
)
def test_payment_component(due: tuple[date, ...], expected: float, flag: bool) -> None:
    c = score_payment(account(payment=PaymentSignals(TODAY, due)), TODAY, CFG)
    assert c.value == expected
    assert ("payment_overdue" in c.flags) is flag


def test_payment_stale_billing_feed_is_missing() -> None:  # 4.4: billing 30 days
    c = score_payment(account(payment=PaymentSignals(ago(31), (ago(90),))), TODAY, CFG)
    assert (c.value, c.status, c.flags) == (None, "stale", ("stale_billing",))


# --- 4.4 combining, missing and stale data -----------------------------------------------------


def test_all_feeds_perfect_scores_100_green() -> None:
    r = compute_health(healthy(), TODAY)
    assert (r.score, r.band, r.coverage) == (100, "green", 100)
    assert r.model_version == MODEL_VERSION
    assert r.loyalty_type == "true"


def test_weights_renormalised_over_available_components() -> None:  # 4.4
    # usage 100 (w30) and engagement 0 (w15, never touched, old account): 3000/45 = 66.67 -> 67
    inp = account(usage=usage(), engagement=EngagementSignals())
    r = compute_health(inp, TODAY)
    assert r.score == 67
    assert r.coverage == 45
    assert r.band == "unknown"  # coverage 45 < 50
    assert "insufficient_data" in r.flags


@pytest.mark.parametrize(
    ("inp", "coverage", "band"),
    [
        pytest.param(account(), 0, "unknown", id="4.4-nothing-known"),
        pytest.param(
            account(usage=usage(), support=SupportSignals(), payment=PaymentSignals(TODAY)),
            50,
            "green",
            id="4.4-coverage-exactly-50-has-a-band",
        ),
        pytest.param(
            account(
                usage=usage(observed_on=ago(8)),
                support=SupportSignals(),
                payment=PaymentSignals(TODAY),
            ),
            20,
            "unknown",
            id="4.4-stale-usage-lowers-coverage",
        ),
    ],
)
def test_coverage_floor(inp: HealthInput, coverage: int, band: str) -> None:
    r = compute_health(inp, TODAY)
    assert (r.coverage, r.band) == (coverage, band)


def test_nothing_known_has_no_score() -> None:  # 4.4
    r = compute_health(account(), TODAY)
    assert r.score is None
    assert r.reasons_text.startswith("Only 0 %")


def test_disabled_component_is_not_missing() -> None:  # 4.4
    cfg = ScoringConfig(weights=Weights(relationship=0, value=0, sentiment=0))
    inp = replace(healthy(), contacts=(), value=None, nps=(), surveys=())
    r = compute_health(inp, TODAY, cfg)
    assert r.coverage == 100
    assert r.component("relationship").status == "disabled"


def test_score_is_written_when_band_unknown() -> None:  # 4.4 last bullet
    r = compute_health(account(usage=usage(), engagement=EngagementSignals(ago(5))), TODAY)
    assert r.band == "unknown"
    assert r.score == 100


# --- 4.5 bands and caps ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "band"),
    [
        pytest.param(100, "green", id="4.5-100-green"),
        pytest.param(70, "green", id="4.5-70-green"),
        pytest.param(69, "yellow", id="4.5-69-yellow"),
        pytest.param(40, "yellow", id="4.5-40-yellow"),
        pytest.param(39, "red", id="4.5-39-red"),
        pytest.param(0, "red", id="4.5-0-red"),
    ],
)
def test_bands(score: int, band: str) -> None:
    assert band_of(score) == band


def test_bands_are_settings() -> None:  # 4.5, 10 scoring.bands
    cfg = ScoringConfig(bands=BandsConfig(green=80, yellow=50))
    assert (band_of(79, cfg), band_of(49, cfg)) == ("yellow", "red")


def dormant_but_otherwise_perfect() -> HealthInput:
    return replace(healthy(), usage=usage(last_login_on=ago(20)))


@pytest.mark.parametrize(
    ("inp", "tier", "caps", "band", "applied"),
    [
        pytest.param(
            dormant_but_otherwise_perfect(),
            "high",
            CapsConfig(),
            "yellow",
            ("dormant",),
            id="4.5-dormant-caps",
        ),
        pytest.param(
            dormant_but_otherwise_perfect(),
            "high",
            CapsConfig(dormant=False),
            "green",
            (),
            id="4.5-dormant-cap-switchable",
        ),
        pytest.param(
            replace(
                healthy(),
                contacts=(
                    ContactSignal(CHAMP, ago(10), active=False, left_on=ago(10)),
                    ContactSignal(CHAMP, ago(10)),
                    ContactSignal(DM, ago(10)),
                ),
            ),
            "key",
            CapsConfig(),
            "yellow",
            ("champion_left",),
            id="4.5-champion-left-key-caps",
        ),
        pytest.param(
            replace(
                healthy(),
                contacts=(
                    ContactSignal(CHAMP, ago(10), active=False, left_on=ago(10)),
                    ContactSignal(CHAMP, ago(10)),
                    ContactSignal(DM, ago(10)),
                ),
            ),
            "low",
            CapsConfig(),
            "green",
            (),
            id="4.5-champion-left-low-not-capped",
        ),
    ],
)
def test_caps(
    inp: HealthInput, tier: str, caps: CapsConfig, band: str, applied: tuple[str, ...]
) -> None:
    r = compute_health(replace(inp, tier=tier), TODAY, ScoringConfig(caps=caps))
    assert r.uncapped_band == "green"
    assert r.band == band
    assert r.caps == applied


def test_dormant_with_everything_else_perfect_scores_70() -> None:  # 4.5 example
    r = compute_health(dormant_but_otherwise_perfect(), TODAY)
    assert r.score == 70
    assert r.component("usage").value == 0


# --- 4.6 trend -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "score", "trend"),
    [
        pytest.param((), 60, "new", id="4.6-no-snapshot-new"),
        pytest.param((SnapshotPoint(ago(30), 55),), 60, "up", id="4.6-plus-5-up"),
        pytest.param((SnapshotPoint(ago(30), 56),), 60, "flat", id="4.6-plus-4-flat"),
        pytest.param((SnapshotPoint(ago(30), 65),), 60, "down", id="4.6-minus-5-down"),
        pytest.param((SnapshotPoint(ago(22), 10),), 60, "new", id="4.6-22d-too-recent"),
        pytest.param((SnapshotPoint(ago(38), 10),), 60, "new", id="4.6-38d-too-old"),
        pytest.param((SnapshotPoint(ago(23), 10),), 60, "up", id="4.6-23d-in-window"),
        pytest.param(
            (SnapshotPoint(ago(37), 90), SnapshotPoint(ago(29), 60)),
            60,
            "flat",
            id="4.6-closest-to-30d",
        ),
        pytest.param(
            (SnapshotPoint(ago(31), 10), SnapshotPoint(ago(29), 90)),
            60,
            "up",
            id="4.6-tie-goes-to-older",
        ),
        pytest.param((SnapshotPoint(ago(30), None),), 60, "new", id="4.6-no-score-then-new"),
        pytest.param((SnapshotPoint(ago(30), 50),), None, "new", id="4.6-no-score-now-new"),
    ],
)
def test_trend(history: tuple[SnapshotPoint, ...], score: int | None, trend: str) -> None:
    assert compute_trend(score, history, TODAY)[0] == trend


# --- 4.7 loyalty -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("u", "s", "det", "kind"),
    [
        pytest.param(60.0, 60.0, False, "true", id="4.7-high-high-true"),
        pytest.param(60.0, 59.0, False, "false", id="4.7-high-usage-low-attitude-false"),
        pytest.param(80.0, 90.0, True, "false", id="4.7-key-detractor-makes-attitude-low"),
        pytest.param(59.0, 80.0, False, "latent", id="4.7-low-usage-high-attitude-latent"),
        pytest.param(10.0, 10.0, False, "none", id="4.7-low-low-none"),
        pytest.param(None, 80.0, False, "unknown", id="4.7-usage-missing-unknown"),
        pytest.param(80.0, None, False, "unknown", id="4.7-sentiment-missing-unknown"),
    ],
)
def test_loyalty_quadrant(u: float | None, s: float | None, det: bool, kind: str) -> None:
    assert classify_loyalty(u, s, det) == kind


def false_loyal() -> HealthInput:
    return replace(healthy(), nps=(NpsAnswer(4, ago(20), "cfo", "decision_maker"),), surveys=())


def test_false_loyalty_caps_band_and_leads_reasons() -> None:  # 4.5, 4.7, 4.8
    r = compute_health(false_loyal(), TODAY)
    assert r.false_loyalty
    assert r.loyalty_type == "false"
    assert r.uncapped_band == "green"
    assert r.band == "yellow"
    assert r.reasons[0].code == "false_loyalty"
    assert r.reasons[0].text == (
        "High usage (100 % seats) but unhappy (decision maker NPS 4): false-loyalty risk"
    )


# --- 4.8 reasons -----------------------------------------------------------------------------


def test_reasons_flags_in_order_then_components_by_lost_points() -> None:
    inp = replace(
        healthy(),
        usage=usage(active_users_30d=12, logins_30d=100),
        payment=PaymentSignals(TODAY, (ago(70),)),
        engagement=EngagementSignals(ago(210)),
    )
    r = compute_health(inp, TODAY)
    codes = [x.code for x in r.reasons]
    assert codes == ["payment_overdue", "no_touch", "low_seats"]
    assert r.reasons[0].text == "Invoice 70 days overdue"
    assert r.reasons[1].text == "No two-way contact for 210 days (cadence 90)"
    assert r.reasons[2].text == "12 of 40 seats active"
    assert r.reasons_text == "; ".join(x.text for x in r.reasons)


def test_a_flagged_component_gives_no_second_reason() -> None:  # 4.8
    inp = replace(healthy(), payment=PaymentSignals(TODAY, (ago(70),)))
    r = compute_health(inp, TODAY)
    assert [x.code for x in r.reasons] == ["payment_overdue"]


def test_usage_drop_reason_text() -> None:  # 4.8 example
    inp = replace(
        healthy(), usage=usage(active_users_30d=31, logins_30d=310, prev_active_users_30d=50)
    )
    r = compute_health(inp, TODAY)
    assert Reason("usage_drop", "Active users down 38 % vs previous 30 days") in r.reasons


def test_components_below_5_lost_points_give_no_reason() -> None:  # 4.8
    # relationship 70 of 100, weight 10 of 100: 3 lost points
    inp = replace(healthy(), contacts=(ContactSignal(CHAMP, ago(10)), ContactSignal(DM, ago(200))))
    r = compute_health(inp, TODAY)
    assert r.band == "green"
    assert all(x.code != "single_threaded" for x in r.reasons)


def test_green_without_flags_gets_two_strongest() -> None:  # 4.8
    r = compute_health(healthy(), TODAY)
    assert len(r.reasons) == 2
    assert r.reasons[0].code == "strong_usage"


def test_silent_reported_not_penalised() -> None:  # 4.3 support, 4.8
    inp = replace(
        healthy(),
        usage=usage(active_users_30d=15, logins_30d=60),
        support=SupportSignals(last_ticket_on=None),
    )
    r = compute_health(inp, TODAY)
    assert r.component("support").value == 100
    assert "silent" in r.flags


def test_join_cuts_at_a_reason_boundary() -> None:  # 4.8: 255 chars
    reasons = [Reason("a", "x" * 200), Reason("b", "y" * 60), Reason("c", "z" * 10)]
    text = join_reasons(reasons, 255)
    assert text == "x" * 200
    assert join_reasons([Reason("a", "x" * 100), Reason("b", "y" * 100)], 255) == (
        "x" * 100 + "; " + "y" * 100
    )


# --- properties ------------------------------------------------------------------------------

days = st.integers(min_value=0, max_value=500)
small = st.integers(min_value=0, max_value=60)


@st.composite
def inputs(draw: st.DrawFn) -> HealthInput:
    seats = draw(st.one_of(st.none(), st.integers(0, 200)))
    active = draw(st.integers(0, 200))
    use = draw(
        st.one_of(
            st.none(),
            st.builds(
                UsageSignals,
                observed_on=st.builds(ago, st.integers(0, 12)),
                active_users_30d=st.just(active),
                logins_30d=st.integers(0, 5000),
                licensed_seats=st.just(seats),
                key_features_used_30d=st.one_of(st.none(), st.integers(0, 20)),
                key_features_defined=st.one_of(st.none(), st.integers(0, 20)),
                last_login_on=st.one_of(st.none(), st.builds(ago, st.integers(0, 60))),
                prev_active_users_30d=st.one_of(st.none(), st.integers(0, 300)),
            ),
        )
    )
    eng = draw(
        st.one_of(
            st.none(),
            st.builds(
                EngagementSignals,
                last_two_way_touch_on=st.one_of(st.none(), st.builds(ago, days)),
                meetings_scheduled_180d=small,
                meetings_attended_180d=small,
                csm_emails_90d=small,
                csm_emails_answered_90d=small,
            ),
        )
    )
    nps = draw(
        st.lists(
            st.builds(
                NpsAnswer,
                score=st.integers(0, 10),
                responded_on=st.builds(ago, days),
                contact_key=st.one_of(st.none(), st.sampled_from("abc")),
                role=st.one_of(
                    st.none(), st.sampled_from(["decision_maker", "champion", "exec", "user"])
                ),
            ),
            max_size=4,
        )
    )
    surveys = draw(
        st.lists(
            st.builds(
                SurveyAnswer,
                kind=st.sampled_from(["csat", "ces"]),
                score=st.floats(1, 7),
                responded_on=st.builds(ago, days),
            ),
            max_size=3,
        )
    )
    sup = draw(
        st.one_of(
            st.none(),
            st.builds(
                SupportSignals,
                tickets_30d=small,
                tickets_prior_90d=small,
                tickets_90d=small,
                fcr_90d=st.one_of(st.none(), st.floats(0, 1)),
                escalations_90d=st.integers(0, 5),
                oldest_open_p1_or_escalation_on=st.one_of(st.none(), st.builds(ago, small)),
                last_ticket_on=st.one_of(st.none(), st.builds(ago, days)),
            ),
        )
    )
    contacts = draw(
        st.lists(
            st.builds(
                ContactSignal,
                roles=st.frozensets(
                    st.sampled_from(["champion", "decision_maker", "exec", "user"])
                ),
                last_two_way_touch_on=st.one_of(st.none(), st.builds(ago, days)),
                active=st.booleans(),
                left_on=st.one_of(st.none(), st.builds(ago, days)),
            ),
            max_size=4,
        )
    )
    val = draw(
        st.one_of(
            st.none(),
            st.builds(
                ValueSignals,
                onboarding=st.booleans(),
                milestones=st.lists(
                    st.builds(
                        Milestone,
                        due_on=st.builds(ago, st.integers(-30, 60)),
                        done_on=st.one_of(st.none(), st.builds(ago, st.integers(0, 60))),
                    ),
                    max_size=4,
                ).map(tuple),
                criteria_met=st.integers(0, 4),
                criteria_partly_met=st.integers(0, 4),
                criteria_not_met=st.integers(0, 4),
            ),
        )
    )
    pay = draw(
        st.one_of(
            st.none(),
            st.builds(
                PaymentSignals,
                observed_on=st.builds(ago, st.integers(0, 40)),
                open_invoice_due_on=st.lists(st.builds(ago, st.integers(-30, 120)), max_size=3).map(
                    tuple
                ),
            ),
        )
    )
    history = draw(
        st.lists(
            st.builds(
                SnapshotPoint,
                on=st.builds(ago, st.integers(1, 60)),
                score=st.one_of(st.none(), st.integers(0, 100)),
            ),
            max_size=3,
        )
    )
    return HealthInput(
        tier=draw(st.sampled_from(["key", "high", "low", "tech"])),
        customer_since_on=draw(st.one_of(st.none(), st.builds(ago, st.integers(0, 2000)))),
        usage=use,
        engagement=eng,
        nps=tuple(nps),
        surveys=tuple(surveys),
        support=sup,
        contacts=tuple(contacts),
        value=val,
        payment=pay,
        history=tuple(history),
    )


@settings(max_examples=150, deadline=None)
@given(inputs())
def test_property_score_range_reasons_fit_and_band_consistent(inp: HealthInput) -> None:
    r = compute_health(inp, TODAY)
    assert r.score is None or 0 <= r.score <= 100
    assert 0 <= r.coverage <= 100
    assert len(r.reasons_text) <= 255
    assert len(r.reasons) <= 3
    for c in r.components:
        assert c.value is None or 0 <= c.value <= 100
    if r.coverage < 50:
        assert r.band == "unknown"
    elif r.score is not None:
        assert r.uncapped_band == band_of(r.score)
    assert r.false_loyalty == (r.loyalty_type == "false")


FEEDS: dict[str, tuple[str, object]] = {
    "engagement": ("engagement", None),
    "support": ("support", None),
    "relationship": ("contacts", ()),
    "value": ("value", None),
    "payment": ("payment", None),
}


@settings(max_examples=150, deadline=None)
@given(inputs(), st.sampled_from(["engagement", "support", "relationship", "value", "payment"]))
def test_property_missing_data_is_not_zero(inp: HealthInput, name: str) -> None:
    """4.3/4.4: dropping a feed leaves the score between the others' mean and where it was;
    it never drops the score the way a 0 for that component would."""
    full = compute_health(inp, TODAY)
    comp = full.component(name)
    if comp.value is None or full.score is None:
        return
    field, empty = FEEDS[name]
    without = compute_health(replace(inp, **{field: empty}), TODAY)
    others = [c for c in full.components if c.value is not None and c.name != name]
    zero_weight = sum(c.weight for c in full.components if c.value is not None)
    as_if_zero = sum(c.weight * (c.value or 0) for c in others) / zero_weight
    assert without.coverage <= full.coverage
    if without.score is not None:
        assert without.score >= round_half_up(as_if_zero)


@settings(max_examples=100, deadline=None)
@given(inputs(), st.integers(1, 60))
def test_property_more_overdue_never_raises_payment(inp: HealthInput, extra: int) -> None:
    """4.3 payment is monotone: an invoice more days overdue never scores higher."""
    if inp.payment is None or not inp.payment.open_invoice_due_on:
        return
    later = replace(
        inp.payment,
        open_invoice_due_on=tuple(
            d - timedelta(days=extra) for d in inp.payment.open_invoice_due_on
        ),
    )
    a = score_payment(inp, TODAY, CFG).value
    b = score_payment(replace(inp, payment=later), TODAY, CFG).value
    if a is not None and b is not None:
        assert b <= a


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 200), st.integers(0, 200), st.integers(1, 200))
def test_property_more_active_seats_never_lowers_usage(a: int, b: int, seats: int) -> None:
    """4.3 usage: more active users on the same seats (and the same logins per user) never
    lowers the seat sub-score or usage, short of the dormant rule."""
    lo, hi = sorted((a, b))
    u_lo = score_usage(
        account(usage=usage(active_users_30d=lo, logins_30d=8 * lo, licensed_seats=seats)),
        TODAY,
        CFG,
    )
    u_hi = score_usage(
        account(usage=usage(active_users_30d=hi, logins_30d=8 * hi, licensed_seats=seats)),
        TODAY,
        CFG,
    )
    if u_lo.value is not None and u_hi.value is not None and lo > 0:
        assert u_hi.value >= u_lo.value - 1e-9


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 100), st.integers(0, 100))
def test_property_band_monotone_in_score(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    rank = {"red": 0, "yellow": 1, "green": 2}
    assert rank[band_of(lo)] <= rank[band_of(hi)]
