"""Demo exports of the touchpoint systems: helpdesk, web analytics, e-mail, social, spend.

Each writer draws from the same people as the CRM and the shop, records which record belongs
to whom in the ground truth, and adds a known number of contract-breaking rows.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np

from crm360.demo.generator import (
    DAY,
    GIVEN_NAMES,
    SURNAMES,
    World,
    csv_bytes,
    iso_jst,
    person_email,
)
from crm360.fileio import write_atomic

WEB_DAYS = 30
EVENTS_PER_PERSON = 20
EMAIL_DAYS = 120
SOCIAL_DAYS = 60
SPEND_MONTHS = 24


def write_all(world: World) -> dict[str, int]:
    counts = {"support_tickets": _write_support(world)}
    counts["web_events"] = _write_web(world)
    counts.update(_write_email(world))
    counts.update(_write_social(world))
    counts["spend_monthly"] = _write_spend(world)
    return counts


def _jst_day(seconds: int) -> date:
    return date.fromordinal(date(1970, 1, 1).toordinal() + (int(seconds) + 9 * 3600) // DAY)


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


# --- support ------------------------------------------------------------------------------


def _write_support(world: World) -> int:
    """Helpdesk tickets from ~20% of people, served by the demo API from support/tickets.jsonl."""
    rng, people, end = world.rng, world.people, world.end
    n = len(people["has_crm"])
    writers = np.flatnonzero(rng.random(n) < 0.20)
    categories = ["billing", "shipping", "product", "account", "cancellation", "other"]
    channels = ["email", "phone", "chat", "web_form"]
    subjects = {
        "billing": "請求について",
        "shipping": "配送状況の確認",
        "product": "商品の使い方",
        "account": "ログインできない",
        "cancellation": "定期便の解約",
        "other": "その他のお問い合わせ",
    }
    tickets = []
    for i in writers:
        for _ in range(1 + int(rng.geometric(0.6)) - 1):
            created = int(end - rng.integers(DAY, 730 * DAY))
            resolved = created + int(rng.integers(600, 5 * DAY)) if rng.random() < 0.8 else None
            if resolved is not None and resolved >= end:
                resolved = None
            updated = resolved or created + int(rng.integers(0, 3600))
            updated = min(updated, end - 1)
            category = categories[int(rng.integers(0, len(categories)))]
            # people without a CRM record write from the e-mail of their shop account
            email = person_email(people, i) if people["has_crm"][i] else f"guest{i}@example.net"
            ticket_id = f"T{len(tickets) + 1:08d}"
            stamps = iso_jst(np.array([created, resolved or created, updated]))
            tickets.append({
                "ticket_id": ticket_id,
                "customer_email": email.upper() if rng.random() < 0.1 else email,
                "shop_customer_id": world.shop_id_of.get(int(i)) if rng.random() < 0.5 else None,
                "category": category,
                "channel": channels[int(rng.integers(0, len(channels)))],
                "status": "resolved" if resolved else str(rng.choice(["open", "pending"])),
                "csat": int(rng.choice([1, 2, 3, 4, 5], p=[0.05, 0.1, 0.2, 0.35, 0.3]))
                if resolved and rng.random() < 0.6 else None,
                "subject": subjects[category],
                "created_at": stamps[0],
                "resolved_at": stamps[1] if resolved else None,
                "updated_at": stamps[2],
            })  # fmt: skip
            world.truth.append(("support", ticket_id, int(i)))
    stamp = iso_jst(np.array([end - DAY]))[0]
    bad = (
        dict(tickets[0]) if tickets else {"category": "other", "channel": "email", "status": "open"}
    )
    bad.update(created_at=stamp, updated_at=stamp, resolved_at=None)
    tickets.append({**bad, "ticket_id": "T-BAD-1", "csat": 7})
    tickets.append({**bad, "ticket_id": None})
    tickets.append({**bad, "ticket_id": "T-BAD-3", "category": "refund?"})
    world.inject("support.tickets", "value_above_max", 1)
    world.inject("support.tickets", "missing_key", 1)
    world.inject("support.tickets", "unknown_value", 1)
    write_atomic(world.path("support/tickets.jsonl"), _jsonl(tickets))
    return len(tickets)


# --- web ----------------------------------------------------------------------------------


def _write_web(world: World) -> int:
    """Events of the last WEB_DAYS days, one JSON-lines file per JST day."""
    import polars as pl

    rng, people, end = world.rng, world.people, world.end
    n = len(people["has_crm"])
    total = n * EVENTS_PER_PERSON
    # 80% of events come from known people on one of their two devices, 20% from strangers
    known = rng.random(total) < 0.8
    person = rng.integers(0, n, total)
    device = rng.integers(0, 2, total)
    stranger = rng.integers(0, max(n // 2, 1), total)
    at = end - 1 - rng.integers(0, WEB_DAYS * DAY, total)
    kinds = np.array(["page_view", "product_view", "add_to_cart", "login", "purchase"])
    kind = kinds[rng.choice(5, total, p=[0.5, 0.3, 0.1, 0.07, 0.03])]
    shop_ids = np.array([world.shop_id_of.get(i, 0) for i in range(n)])
    has_shop = shop_ids[person] > 0
    logged_in = known & has_shop & ((kind == "login") | (kind == "purchase"))
    utm = rng.random(total) < 0.2
    sources = np.array(["google", "yahoo", "instagram", "line", "newsletter"])
    mediums = np.array(["cpc", "cpc", "social", "social", "email"])
    source_pick = rng.integers(0, 5, total)
    product = rng.integers(1, 59, total)
    categories = np.array(["スキンケア", "ヘアケア", "サプリメント", "食品", "飲料", "雑貨"])
    frame = pl.DataFrame({
        "n": np.arange(total), "known": known, "person": person, "device": device,
        "stranger": stranger, "at": at, "event_type": kind, "logged_in": logged_in,
        "shop_customer_id": shop_ids[person], "utm": utm, "src": sources[source_pick],
        "medium": mediums[source_pick], "product_id": product,
        "category": categories[(product - 1) // 10 % 6], "utc": rng.random(total) < 0.3,
    }).sort("at", "n")  # fmt: skip
    is_product = pl.col("event_type").is_in(["product_view", "add_to_cart"])
    stamp_local = pl.from_epoch("at", time_unit="s").dt.replace_time_zone("UTC")
    events = frame.select(
        event_id=pl.format("E{}", pl.col("n").cast(pl.String).str.zfill(10)),
        anonymous_id=pl.when("known")
        .then(pl.format("a-{}-{}", "person", "device"))
        .otherwise(pl.format("s-{}", "stranger")),
        shop_customer_id=pl.when("logged_in").then(pl.col("shop_customer_id")),
        email=pl.lit(None, pl.String),
        event_type="event_type",
        page_url=pl.when(is_product)
        .then(pl.format("/products/{}", "product_id"))
        .otherwise(pl.lit("/")),
        product_id=pl.when(is_product).then(pl.col("product_id")),
        category=pl.when(is_product).then(pl.col("category")),
        utm_source=pl.when("utm").then(pl.col("src")),
        utm_medium=pl.when("utm").then(pl.col("medium")),
        utm_campaign=pl.when("utm").then(pl.lit("autumn_sale")),
        occurred_at=pl.when("utc")
        .then(stamp_local.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        .otherwise(
            stamp_local.dt.convert_time_zone("Asia/Tokyo").dt.strftime("%Y-%m-%dT%H:%M:%S%:z")
        ),
        day=stamp_local.dt.convert_time_zone("Asia/Tokyo").dt.date(),
    )
    # truth: each known device belongs to its person
    devices = frame.filter("known").select(["person", "device"]).unique()
    world.truth += [("web", f"a-{p}-{d}", int(p)) for p, d in devices.iter_rows()]
    written = 0
    days = events.partition_by("day", as_dict=True, maintain_order=True)
    for index, ((day,), part) in enumerate(sorted(days.items())):
        data = part.drop("day").write_ndjson().encode("utf-8")
        if index == len(days) - 1:  # the newest file carries the bad lines
            stamp = iso_jst(np.array([end - 60]))[0]
            bad = {"anonymous_id": "s-bad", "event_type": "page_view", "occurred_at": stamp}
            lines = [
                {**bad, "event_id": "E-BAD-1", "occurred_at": "2026-10-32T10:00:00+09:00"},
                {**bad, "event_id": "E-BAD-2", "event_type": "scroll"},
            ]
            data += _jsonl(lines) + b'{"event_id": "E-BAD-3", "anonymous_id": \n'
            world.inject("web.events", "unparsable_timestamp", 1)
            world.inject("web.events", "unknown_value", 1)
            world.inject("web.events", "malformed_json", 1)
            written += 3
        write_atomic(world.path(f"web/events/date={day:%Y-%m-%d}/events.jsonl"), data)
        written += part.height
    return written


# --- e-mail -------------------------------------------------------------------------------


def _write_email(world: World) -> dict[str, int]:
    """A campaign about every week for EMAIL_DAYS days; sends, opens, clicks, bounces..."""
    rng, people, end = world.rng, world.people, world.end
    contacts = np.flatnonzero(people["has_crm"])
    objectives = ["reactivation", "nurture", "cross_sell", "retention", "referral", "newsletter"]
    campaigns, events = [], []
    for k, sent in enumerate(range(end - EMAIL_DAYS * DAY, end - DAY, 7 * DAY)):
        campaign_id = f"CMP{k + 1:04d}"
        control = rng.random() < 0.6
        objective = objectives[k % len(objectives)]
        channel = "line" if k % 5 == 4 else "email"
        sent_at = int(sent + rng.integers(9 * 3600, 12 * 3600))
        audience = contacts[rng.random(len(contacts)) < 0.2]
        campaigns.append([
            campaign_id, f"{objective} #{k + 1}", channel, objective,
            int(len(audience) * (3 if channel == "email" else 8)), iso_jst(np.array([sent_at]))[0],
            "true" if control else "false", "0.1" if control else "",
        ])  # fmt: skip
        held = (
            control & (rng.random(len(audience)) < 0.1)
            if control
            else np.zeros(len(audience), bool)
        )
        draws = rng.random((len(audience), 5))
        delays = rng.integers(60, 3 * DAY, (len(audience), 2))
        for j, i in enumerate(audience):
            email = person_email(people, i)
            base = [campaign_id, f"C{i + 1:07d}", email]
            if held[j]:
                events.append((sent_at, [*base, "holdout", "", sent_at]))
                continue
            events.append((sent_at, [*base, "send", "", sent_at]))
            if draws[j, 0] < 0.02:
                kind = "hard" if draws[j, 1] < 0.3 else "soft"
                events.append((sent_at + 30, [*base, "bounce", kind, sent_at + 30]))
                continue
            if draws[j, 2] < 0.3:
                opened = sent_at + int(delays[j, 0])
                events.append((opened, [*base, "open", "", opened]))
                if draws[j, 3] < 0.25:
                    clicked = opened + int(delays[j, 1] // 10)
                    events.append((clicked, [*base, "click", "", clicked]))
            if draws[j, 4] < 0.004:
                events.append((sent_at + 3600, [*base, "unsubscribe", "", sent_at + 3600]))
    events = [e for e in events if e[0] < end]
    events.sort(key=lambda e: e[0])
    header = [
        "event_id",
        "campaign_id",
        "contact_id",
        "email",
        "event_type",
        "bounce_type",
        "occurred_at",
    ]
    stamps = iso_jst(np.array([e[0] for e in events])) if events else []
    by_day: dict[date, list] = {}
    for n, ((at, row), stamp) in enumerate(zip(events, stamps, strict=True)):
        row[-1] = stamp
        by_day.setdefault(_jst_day(at), []).append([f"EV{n + 1:09d}", *row])
    newest = max(by_day) if by_day else world.as_of - timedelta(days=1)
    bad_stamp = iso_jst(np.array([end - 120]))[0]
    by_day.setdefault(newest, []).extend([
        ["EV-BAD-1", "CMP0001", "", "x@example.com", "forward", "", bad_stamp],
        ["EV-BAD-2", "CMP0001", "", "", "open", "", bad_stamp],
    ])  # fmt: skip
    world.inject("email.events", "unknown_value", 1)
    world.inject("email.events", "missing_required", 1)
    for day, rows in by_day.items():
        write_atomic(world.path(f"email/events_{day:%Y%m%d}.csv"), csv_bytes(header, rows))
    campaign_header = ["campaign_id", "campaign_name", "channel", "objective", "cost", "sent_at",
                       "has_control_group", "control_share"]  # fmt: skip
    write_atomic(world.path("email/campaigns.csv"), csv_bytes(campaign_header, campaigns))
    return {"email_campaigns": len(campaigns), "email_events": sum(len(r) for r in by_day.values())}


# --- social -------------------------------------------------------------------------------


def _write_social(world: World) -> dict[str, int]:
    rng, people, end = world.rng, world.people, world.end
    n = len(people["has_crm"])
    posters = np.flatnonzero(rng.random(n) < 0.04)
    platforms = ["x", "instagram", "facebook", "line", "tiktok"]
    texts = {
        "positive": "とても気に入りました！リピートします",
        "neutral": "届きました。使ってみます",
        "negative": "配送が遅くて残念でした",
    }
    by_day: dict[date, list[dict]] = {}
    count = 0
    for i in posters:
        handle = f"@{GIVEN_NAMES[people['given'][i]][2]}_{SURNAMES[people['surname'][i]][2]}{i}"
        world.truth.append(("social", handle, int(i)))
        for _ in range(int(rng.integers(1, 4))):
            at = int(end - 1 - rng.integers(0, SOCIAL_DAYS * DAY))
            sentiment = str(rng.choice(["positive", "neutral", "negative"], p=[0.6, 0.25, 0.15]))
            count += 1
            mention = {
                "mention_id": f"M{count:08d}",
                "platform": platforms[int(rng.integers(0, 5))],
                "handle": handle,
                "email": person_email(people, i) if rng.random() < 0.3 else None,
                "sentiment": sentiment,
                "rating": {"positive": 5, "neutral": 3, "negative": 2}[sentiment]
                if rng.random() < 0.2
                else None,
                "text": texts[sentiment],
                "posted_at": iso_jst(np.array([at]))[0],
            }
            by_day.setdefault(_jst_day(at), []).append(mention)
    newest = max(by_day) if by_day else world.as_of - timedelta(days=1)
    by_day.setdefault(newest, []).append({
        "mention_id": "M-BAD-1", "platform": "x", "handle": "@someone", "email": None,
        "sentiment": "angry", "rating": None, "text": "…",
        "posted_at": iso_jst(np.array([end - 90]))[0],
    })  # fmt: skip
    world.inject("social.mentions", "unknown_value", 1)
    for day, rows in by_day.items():
        write_atomic(world.path(f"social/mentions_{day:%Y%m%d}.jsonl"), _jsonl(rows))

    contacts = np.flatnonzero(people["has_crm"])
    referrers = contacts[rng.random(len(contacts)) < 0.03]
    referred = rng.choice(contacts, len(referrers))
    referrals = []
    for k, (i, j) in enumerate(zip(referrers, referred, strict=True)):
        if i == j:
            continue
        at = min(int(people["created"][j]) - DAY, end - DAY)
        by_id = rng.random() < 0.7
        referrals.append([
            f"R{k + 1:07d}",
            f"C{i + 1:07d}" if by_id else "",
            "" if by_id else person_email(people, i),
            person_email(people, j), iso_jst(np.array([at]))[0],
        ])  # fmt: skip
    header = [
        "referral_id",
        "referrer_contact_id",
        "referrer_email",
        "referred_email",
        "referred_at",
    ]
    write_atomic(world.path("social/referrals.csv"), csv_bytes(header, referrals))
    total = sum(len(r) for r in by_day.values())
    return {"social_mentions": total, "social_referrals": len(referrals)}


# --- spend --------------------------------------------------------------------------------


def _write_spend(world: World) -> int:
    rng = world.rng
    channels = {
        "search_ads": 1.0,
        "social_ads": 0.8,
        "affiliate": 0.4,
        "email": 0.1,
        "organic": 0.0,
        "referral": 0.15,
    }
    scale = len(world.people["has_crm"]) * 40  # yen per person per month, roughly
    first = date(world.as_of.year, world.as_of.month, 1)
    rows = []
    for back in range(SPEND_MONTHS, 0, -1):
        month = date(
            first.year + (first.month - 1 - back) // 12, (first.month - 1 - back) % 12 + 1, 1
        )
        for channel, weight in channels.items():
            rows.append([month.isoformat(), channel, int(scale * weight * rng.uniform(0.7, 1.3))])
    rows.append(["2020-01-01", "affiliate", -5000])
    world.inject("spend.monthly", "value_below_min", 1)
    write_atomic(
        world.path("spend/marketing_spend.csv"),
        csv_bytes(["month_start", "channel", "spend_jpy"], rows),
    )
    return len(rows)
