"""The shadow gate: a candidate's answers to real production requests against the live bundle's, judged in pairs.

Where the pairs come from:

- on a cluster, the gateway mirrors every live request to the candidate (``HTTPRoute`` ``RequestMirror`` on
  the LLM API, an Istio ``VirtualService`` mirror on the classic path) and both prompt routers write request
  records (serving/request_log.py); a mirrored request keeps its ``x-request-id``, so ``pair_logs`` joins
  the two logs on it;
- locally, ``replay`` sends logged requests to a candidate served on 127.0.0.1 (``champion serve --bundle``),
  each with its original request id, and checks that the bundle that answered is the candidate.

How it decides: there are no references for production traffic, so the judge compares each pair with its
reference-free pairwise rubric, in both orders (order-free with log-probabilities). A pair scores 1 when the
candidate's answer is better, 0 when the live one is, 0.5 for a tie (or a verdict that flips with the order);
the live bundle's score is the complement. The **same engine as the offline gate** then decides
(``evaluators.gate.decide``): a paired non-inferiority test of candidate − live against ``margin``, with
the judge's vote counted only if the judge passed its bias battery. An unreliable judge means "not
promoted": nothing else votes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from champion.errors import ServingError
from champion.parameters import SHADOW_MIN_PAIRS
from champion.request_records import RequestRecord
from evaluators.catalog import SHADOW_PREFERENCE
from evaluators.gate import decide
from evaluators.judge import preference
from evaluators.policy import GatePolicy
from serving.request_log import fetch_records
from serving.smoke import ask_bundle


@dataclass(frozen=True)
class ShadowPair:
    request_id: str
    question: str
    live_answer: str
    candidate_answer: str


def pair_logs(live: Sequence[RequestRecord], candidate: Sequence[RequestRecord]) -> list[ShadowPair]:
    """Join the live and the candidate's request logs on the request id (mirrored requests keep it)."""
    answered = {
        r.request_id: r for r in candidate if r.status == 200 and r.answer is not None and r.question is not None
    }
    return [
        ShadowPair(r.request_id, r.question or "", r.answer or "", answered[r.request_id].answer or "")
        for r in live
        if r.status == 200 and r.answer is not None and r.request_id in answered
    ]


def mirrored_pairs(
    sink_url: str,
    *,
    live_bundle: str,
    candidate_bundle: str,
    since: str,
    want: int,
    timeout_s: float,
    poll_s: float = 10.0,
) -> list[ShadowPair]:
    """Wait until ``want`` mirrored requests have been answered by both bundles (their records in the log sink,
    joined on the request id) or ``timeout_s`` passed, whichever is first; the pairs so far. Fewer than the
    gate's minimum is for the gate to refuse, not for this to hide."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        pairs = pair_logs(
            fetch_records(sink_url, bundle_id=live_bundle, since=since),
            fetch_records(sink_url, bundle_id=candidate_bundle, since=since),
        )
        if len(pairs) >= want or time.monotonic() >= deadline:
            return pairs[:want]
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def replay(
    records: Sequence[RequestRecord], url: str, *, expected_bundle: str, model: str = "", timeout_s: float = 120.0
) -> list[ShadowPair]:
    """Send each logged question to the candidate at ``url`` (its chat route, as a client would), with its
    original request id, and pair the answer with the logged live one."""

    pairs = []
    for record in records:
        try:
            answer = ask_bundle(
                url,
                model,
                record.question or "",
                bundle_id=expected_bundle,
                headers={"x-request-id": record.request_id},  # the candidate's own log pairs on it
                timeout_s=timeout_s,
            )
        except ServingError as exc:
            if exc.status == 409:  # something answered, but not as the candidate
                raise ServingError(
                    f"the server at {url} is not the candidate {expected_bundle[:12]}: {exc.problem}",
                    "serve the candidate bundle there (`champion serve --bundle ID`), or pass its id.",
                    409,
                ) from exc
            raise ServingError(
                f"the candidate at {url} did not answer: {exc.problem}",
                "start it with `champion serve --bundle ID --port PORT` and pass --url http://127.0.0.1:PORT.",
                exc.status,
            ) from exc
        pairs.append(ShadowPair(record.request_id, record.question or "", record.answer or "", answer))
    return pairs


def shadow_gate(
    pairs: Sequence[ShadowPair],
    judge,
    judge_reliability: dict,
    *,
    margin: float = 0.1,
    min_examples: int = SHADOW_MIN_PAIRS,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """Judge every pair (reference-free) and decide with the offline gate's engine. Returns the decision as a
    dict (gate, reasons, checks, n) with the per-pair verdicts."""

    verdicts = judge.compare(
        [{"question": p.question} for p in pairs],
        [p.candidate_answer for p in pairs],
        [p.live_answer for p in pairs],
        reference_free=True,
    )
    scores = [preference(v.winner) for v in verdicts]
    candidate = [{"id": p.request_id, SHADOW_PREFERENCE.name: s} for p, s in zip(pairs, scores)]
    live = [{"id": p.request_id, SHADOW_PREFERENCE.name: 1.0 - s} for p, s in zip(pairs, scores)]
    policy = GatePolicy(
        name="shadow",
        version=1,
        min_examples=min_examples,
        alpha=alpha,
        seed=seed,
        metrics={SHADOW_PREFERENCE.name: {"direction": "higher", "margin": margin, "required": True}},
    )
    decision = decide(
        candidate,
        policy,
        champion_table=live,
        metrics={SHADOW_PREFERENCE.name: SHADOW_PREFERENCE},
        judge_reliable=judge_reliability.get("reliable") is True,
        judge_reasons=judge_reliability.get("reasons", []),
    )
    wins = sum(s == 1.0 for s in scores)
    losses = sum(s == 0.0 for s in scores)
    return {
        "gate": decision.gate,
        "passed": decision.passed,
        "reasons": decision.reasons,
        "checks": [c.model_dump(mode="json") for c in decision.checks],
        "n": len(pairs),
        "candidate_wins": wins,
        "live_wins": losses,
        "ties": len(scores) - wins - losses,
        "mean_preference": math.fsum(scores) / len(scores) if scores else math.nan,
        "judge": {
            "reliable": judge_reliability.get("reliable") is True,
            "reasons": judge_reliability.get("reasons", []),
        },
        "pairs": [
            {
                "request_id": p.request_id,
                "question": p.question,
                "live": p.live_answer,
                "candidate": p.candidate_answer,
                "preference": s,
                "rationale": v.forward.rationale,
            }
            for p, s, v in zip(pairs, scores, verdicts)
        ],
    }
