"""Deterministic demo exports of a Japanese D2C shop's seven source systems.

`generate_demo(out_dir, customers, seed, as_of)` writes, for `customers` real people, the files
`config/sources.yml` points at (all times before `as_of` 00:00 JST):

- `crm/contacts_YYYYMMDD.csv`: a full export in Shift_JIS/CP932 (legacy system) dated a week
  before `as_of`, then one UTF-8 delta per day of the contacts created or changed that day
  (some existing contacts change their e-mail or withdraw consent). Noise as in real exports:
  e-mail case and spaces, phones as 090-1234-5678 / 09012345678 / +81-90-... / full-width,
  postal codes with and without hyphen or full-width.
- `shop/orders.sqlite`: customers, products, orders, order_items, subscriptions, returns, each
  with `updated_at`. 70% of CRM people's accounts carry the CRM id, the rest share only the
  e-mail (sometimes in another case), a few use a different e-mail altogether.
- `support/tickets.jsonl` (served by the demo helpdesk API), `web/events/date=*/events.jsonl`,
  `email/campaigns.csv` + `email/events_YYYYMMDD.csv`, `social/mentions_YYYYMMDD.jsonl` +
  `social/referrals.csv`, `spend/marketing_spend.csv`.
- `_truth/identity.csv`: which source record belongs to which person (for scoring identity
  resolution), and `_truth/injected_bad_rows.json`: how many bad rows of each kind were put in
  each source object (they must all end in quarantine).
- `.crm360-demo` (DEMO_MARKER), when the folder was new or empty: it tells `crm360 demo` that
  the folder is the demo's and may be deleted to generate it again.

The same arguments always give the same files.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sqlite3
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from crm360.fileio import write_atomic

log = logging.getLogger(__name__)

JST = timezone(timedelta(hours=9))

# In a folder the demo made: `crm360 demo` deletes only folders that carry it (or are empty).
DEMO_MARKER = ".crm360-demo"
_MARKER_TEXT = "Made by the crm360 demo; `crm360 demo` deletes this folder to make it again.\n"


def mark_demo_folder(folder: Path) -> bool:
    """Create `folder` and mark it as the demo's, unless it already holds anything else (a
    user's files are never claimed); return whether it carries the marker."""
    folder = Path(folder)
    marker = folder / DEMO_MARKER
    if folder.is_dir() and not marker.exists() and any(folder.iterdir()):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(_MARKER_TEXT, encoding="utf-8")
    return True


SURNAMES = [
    ("佐藤", "サトウ", "sato"),
    ("鈴木", "スズキ", "suzuki"),
    ("高橋", "タカハシ", "takahashi"),
    ("田中", "タナカ", "tanaka"),
    ("伊藤", "イトウ", "ito"),
    ("渡辺", "ワタナベ", "watanabe"),
    ("山本", "ヤマモト", "yamamoto"),
    ("中村", "ナカムラ", "nakamura"),
    ("小林", "コバヤシ", "kobayashi"),
    ("加藤", "カトウ", "kato"),
    ("吉田", "ヨシダ", "yoshida"),
    ("山田", "ヤマダ", "yamada"),
    ("佐々木", "ササキ", "sasaki"),
    ("山口", "ヤマグチ", "yamaguchi"),
    ("松本", "マツモト", "matsumoto"),
    ("井上", "イノウエ", "inoue"),
    ("木村", "キムラ", "kimura"),
    ("林", "ハヤシ", "hayashi"),
    ("斎藤", "サイトウ", "saito"),
    ("清水", "シミズ", "shimizu"),
    ("山崎", "ヤマザキ", "yamazaki"),
    ("森", "モリ", "mori"),
    ("池田", "イケダ", "ikeda"),
    ("橋本", "ハシモト", "hashimoto"),
    ("阿部", "アベ", "abe"),
    ("石川", "イシカワ", "ishikawa"),
    ("山下", "ヤマシタ", "yamashita"),
    ("中島", "ナカジマ", "nakajima"),
    ("石井", "イシイ", "ishii"),
    ("小川", "オガワ", "ogawa"),
    ("前田", "マエダ", "maeda"),
    ("岡田", "オカダ", "okada"),
    ("長谷川", "ハセガワ", "hasegawa"),
    ("藤田", "フジタ", "fujita"),
    ("後藤", "ゴトウ", "goto"),
    ("近藤", "コンドウ", "kondo"),
    ("村上", "ムラカミ", "murakami"),
    ("遠藤", "エンドウ", "endo"),
    ("青木", "アオキ", "aoki"),
    ("坂本", "サカモト", "sakamoto"),
]
GIVEN_NAMES = [
    ("翔太", "ショウタ", "shota"),
    ("大輔", "ダイスケ", "daisuke"),
    ("健太", "ケンタ", "kenta"),
    ("拓也", "タクヤ", "takuya"),
    ("直樹", "ナオキ", "naoki"),
    ("誠", "マコト", "makoto"),
    ("大樹", "ダイキ", "daiki"),
    ("亮", "リョウ", "ryo"),
    ("蓮", "レン", "ren"),
    ("悠真", "ユウマ", "yuma"),
    ("陽翔", "ハルト", "haruto"),
    ("湊", "ミナト", "minato"),
    ("隆", "タカシ", "takashi"),
    ("浩二", "コウジ", "koji"),
    ("和也", "カズヤ", "kazuya"),
    ("一郎", "イチロウ", "ichiro"),
    ("健", "ケン", "ken"),
    ("修", "オサム", "osamu"),
    ("学", "マナブ", "manabu"),
    ("剛", "ツヨシ", "tsuyoshi"),
    ("花子", "ハナコ", "hanako"),
    ("陽菜", "ヒナ", "hina"),
    ("結衣", "ユイ", "yui"),
    ("美咲", "ミサキ", "misaki"),
    ("さくら", "サクラ", "sakura"),
    ("愛", "アイ", "ai"),
    ("葵", "アオイ", "aoi"),
    ("由美", "ユミ", "yumi"),
    ("恵子", "ケイコ", "keiko"),
    ("真由美", "マユミ", "mayumi"),
    ("明美", "アケミ", "akemi"),
    ("久美子", "クミコ", "kumiko"),
    ("彩", "アヤ", "aya"),
    ("舞", "マイ", "mai"),
    ("優子", "ユウコ", "yuko"),
    ("智子", "トモコ", "tomoko"),
    ("裕子", "ユウコ", "yuko"),
    ("凛", "リン", "rin"),
    ("芽依", "メイ", "mei"),
    ("杏", "アン", "an"),
]
PREFECTURES = [
    ("東京都", 14),
    ("神奈川県", 9),
    ("大阪府", 9),
    ("愛知県", 7),
    ("埼玉県", 7),
    ("千葉県", 6),
    ("兵庫県", 5),
    ("北海道", 5),
    ("福岡県", 5),
    ("静岡県", 3),
    ("茨城県", 2),
    ("広島県", 2),
    ("京都府", 2),
    ("宮城県", 2),
    ("新潟県", 2),
    ("長野県", 2),
    ("岐阜県", 2),
    ("栃木県", 2),
    ("群馬県", 2),
    ("岡山県", 2),
    ("熊本県", 2),
    ("沖縄県", 1),
    ("鹿児島県", 1),
    ("青森県", 1),
]
DOMAINS = ["example.com", "example.co.jp", "example.ne.jp", "mail.example.jp"]
CATEGORIES = {
    "スキンケア": ["化粧水", "乳液", "美容液", "クレンジング", "日焼け止め", "保湿クリーム"],
    "ヘアケア": ["シャンプー", "コンディショナー", "ヘアオイル", "ヘアマスク"],
    "サプリメント": ["ビタミンC", "マルチビタミン", "プロテイン", "青汁", "乳酸菌"],
    "食品": ["玄米", "オートミール", "グラノーラ", "味噌", "はちみつ"],
    "飲料": ["緑茶", "ほうじ茶", "コーヒー豆", "炭酸水", "甘酒"],
    "雑貨": ["タオル", "マグカップ", "エコバッグ", "アロマキャンドル"],
}

INDUSTRIES = ["小売", "製造", "IT・通信", "飲食", "医療・福祉", "不動産", "教育"]
ACQUISITION = (
    ["search_ads", "social_ads", "affiliate", "email", "organic", "referral"],
    [0.25, 0.2, 0.1, 0.05, 0.3, 0.1],
)
PRODUCTS_UPDATED_AT = "2022-01-01T00:00:00+09:00"
CSV_COLUMNS = [
    "contact_id", "last_name", "first_name", "last_name_kana", "first_name_kana", "email",
    "phone", "postal_code", "prefecture", "birth_date", "company_name", "industry",
    "email_opt_in", "do_not_contact", "deletion_requested", "created_at", "updated_at",
]  # fmt: skip
DELTA_DAYS = 7
DAY = 86400
_FULLWIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")
_PREFECTURE_WEIGHTS = np.array([w for _, w in PREFECTURES], dtype=float)
_PREFECTURE_WEIGHTS /= _PREFECTURE_WEIGHTS.sum()


# How the same surname is written differently in another system (variant kanji, slips)
SURNAME_VARIANTS = {
    "斎藤": "斉藤",
    "渡辺": "渡邊",
    "高橋": "髙橋",
    "山崎": "山﨑",
    "中島": "中嶋",
    "佐藤": "佐籐",
}


def _halfwidth_katakana() -> dict[str, str]:
    """Full-width katakana -> half-width (ｶﾀｶﾅ), as old systems store readings."""
    table = {}
    for code in range(0xFF66, 0xFF9E):
        half = chr(code)
        table[unicodedata.normalize("NFKC", half)] = half
        for mark in ("ﾞ", "ﾟ"):
            combined = unicodedata.normalize("NFKC", half + mark)
            if len(combined) == 1:
                table[combined] = half + mark
    table["ー"] = "ｰ"
    return table


_HALFWIDTH_KANA = _halfwidth_katakana()


def to_halfwidth_kana(text: str) -> str:
    return "".join(_HALFWIDTH_KANA.get(ch, ch) for ch in text)


@dataclass
class World:
    """Everything the writers share: the people, the clock, the ground truth, the bad rows."""

    rng: np.random.Generator
    out_dir: Path
    as_of: date
    end: int  # as_of 00:00 JST, epoch seconds: every generated time is before it
    people: dict[str, np.ndarray]
    truth: list[tuple[str, str, int]] = field(default_factory=list)
    injected: dict[str, dict[str, int]] = field(default_factory=dict)
    shop_id_of: dict[int, int] = field(default_factory=dict)  # person -> shop customer id
    # identity noise has its own stream, so adding a kind of noise leaves the rest unchanged
    noise: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def inject(self, obj: str, kind: str, count: int = 1) -> None:
        kinds = self.injected.setdefault(obj, {})
        kinds[kind] = kinds.get(kind, 0) + count

    def path(self, relative: str) -> Path:
        path = self.out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def generate_demo(
    out_dir: Path, customers: int = 2000, seed: int = 42, as_of: date = date(2026, 11, 1)
) -> dict[str, int]:
    """Write the demo exports of every source to out_dir; return rows written per object
    (`<source>_<object>`, bad rows included)."""
    from crm360.demo import touchpoints

    out_dir = Path(out_dir)
    mark_demo_folder(out_dir)
    rng = np.random.default_rng(seed)
    end = int(datetime.combine(as_of, datetime.min.time(), tzinfo=JST).timestamp())
    world = World(rng, out_dir, as_of, end, _people(rng, customers, end))
    world.noise = np.random.default_rng([seed, 7])
    _households(world)
    counts = {"crm_contacts": _write_crm(world)}
    counts.update(_write_shop(world))
    counts.update(touchpoints.write_all(world))
    _write_truth(world)
    log.info("demo sources for %d people in %s: %s", customers, out_dir, counts)
    return counts


def _write_truth(world: World) -> None:
    rows = sorted(world.truth)
    write_atomic(
        world.path("_truth/identity.csv"), csv_bytes(["source", "source_key", "person_id"], rows)
    )
    write_atomic(
        world.path("_truth/injected_bad_rows.json"),
        (json.dumps(world.injected, indent=2, sort_keys=True) + "\n").encode("utf-8"),
    )


def csv_bytes(header: list[str], rows: list, encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def iso_jst(seconds: np.ndarray) -> list[str]:
    """Epoch seconds -> ISO 8601 strings in JST with offset, e.g. 2024-03-05T14:22:10+09:00."""
    local = (np.asarray(seconds, dtype="int64") + 9 * 3600).astype("datetime64[s]")
    return [s + "+09:00" for s in np.datetime_as_string(local, unit="s")]


def _people(rng: np.random.Generator, n: int, end: int) -> dict[str, np.ndarray]:
    """Who exists: names, contact data, which systems know them, when they appeared."""
    four_years = 4 * 365 * 86400
    has_crm = rng.random(n) < 0.95
    has_shop = np.where(has_crm, rng.random(n) < 0.85, True)
    created = end - rng.integers(86400, four_years, n)
    return {
        "surname": rng.integers(0, len(SURNAMES), n),
        "given": rng.integers(0, len(GIVEN_NAMES), n),
        "domain": rng.integers(0, len(DOMAINS), n),
        "mobile": rng.choice([70, 80, 90], n),
        "phone_digits": rng.integers(0, 10**8, n),
        "postal": rng.integers(100_0000, 999_9999, n),
        "has_crm": has_crm,
        "has_shop": has_shop,
        "created": created,
        "prefecture": rng.choice(len(PREFECTURES), n, p=_PREFECTURE_WEIGHTS),
    }


def _households(world: World) -> None:
    """About 2% of people live with the person before them: same surname, postal code and a
    shared landline. They are different people, which identity resolution must not merge."""
    people = world.people
    n = len(people["has_crm"])
    family = np.flatnonzero(world.noise.random(n) < 0.02)
    family = family[family > 0]
    for key in ("surname", "postal", "prefecture"):
        people[key][family] = people[key][family - 1]
    people["age_days"] = world.noise.integers(18 * 365, 80 * 365, n)
    landline = world.noise.integers(10**7, 10**8, n)
    people["landline"] = np.where(np.isin(np.arange(n), family), 0, landline)
    people["landline"][family - 1] = landline[family - 1]
    people["landline"][family] = landline[family - 1]
    people["family"] = np.isin(np.arange(n), np.concatenate([family, family - 1]))


def person_email(people: dict, i: int) -> str:
    given = GIVEN_NAMES[people["given"][i]][2]
    surname = SURNAMES[people["surname"][i]][2]
    return f"{given}.{surname}{i}@{DOMAINS[people['domain'][i]]}"


def _phone(people: dict, i: int, style: float) -> str:
    digits = f"{people['phone_digits'][i]:08d}"
    mobile = people["mobile"][i]
    if style < 0.03:
        return ""
    if style < 0.06:
        return f"0{mobile}-{digits[:4]}-{digits[4:]}".translate(_FULLWIDTH)
    if style < 0.16:
        return f"+81-{mobile}-{digits[:4]}-{digits[4:]}"
    if style < 0.22:
        return f"+81{mobile}{digits}"
    if style < 0.40:
        return f"0{mobile}{digits}"
    return f"0{mobile}-{digits[:4]}-{digits[4:]}"


def _landline(people: dict, i: int) -> str:
    digits = f"{people['landline'][i]:08d}"
    return f"03-{digits[:4]}-{digits[4:]}"


def _postal(code: int, style: float) -> str:
    text = f"{code:07d}"
    if style < 0.02:
        return ""
    if style < 0.05:
        return f"{text[:3]}-{text[3:]}".translate(_FULLWIDTH)
    if style < 0.25:
        return text
    return f"{text[:3]}-{text[3:]}"


def _noisy_email(email: str, style: float) -> str:
    if style < 0.02:
        return ""
    if style < 0.07:
        return email[0].upper() + email[1:]
    if style < 0.10:
        return f" {email} "
    if style < 0.12:
        return email.upper()
    return email


def _contact_row(world: World, i: int, styles: np.ndarray, extra: dict) -> list:
    people = world.people
    surname, given = SURNAMES[people["surname"][i]], GIVEN_NAMES[people["given"][i]]
    business = extra["business"]
    return [
        f"C{i + 1:07d}", surname[0], given[0], surname[1], given[1],
        _noisy_email(extra.get("email") or person_email(people, i), styles[0]),
        _landline(people, i) if people["family"][i] else _phone(people, i, styles[1]),
        _postal(people["postal"][i], styles[2]),
        PREFECTURES[people["prefecture"][i]][0],
        extra["birth"],
        f"株式会社{surname[0]}商事" if business else "",
        INDUSTRIES[i % len(INDUSTRIES)] if business else "",
        "true" if extra["opt_in"] else "false",
        "true" if extra["dnc"] else "false",
        "true" if extra["deletion"] else "false",
        extra["created"], extra["updated"],
    ]  # fmt: skip


def _write_crm(world: World) -> int:
    """A CP932 full export a week before as_of, then one UTF-8 delta per day."""
    rng, people, end = world.rng, world.people, world.end
    index = np.flatnonzero(people["has_crm"])
    n = len(index)
    styles = rng.random((n, 3))
    age = people["age_days"][index]
    no_birth = rng.random(n) < 0.10
    opt_in = rng.random(n) < 0.70
    dnc = rng.random(n) < 0.03
    deletion = rng.random(n) < 0.005
    business = rng.random(n) < 0.08
    created = people["created"][index]
    updated = created + (rng.random(n) * (end - 1 - created)).astype("int64")
    cut = end - DELTA_DAYS * DAY
    changes = (updated < cut) & (rng.random(n) < 0.03)
    change_at = end - 1 - (rng.random(n) * (DELTA_DAYS * DAY - 1)).astype("int64")
    change_kind = rng.random(n)
    created_iso, updated_iso, change_iso = iso_jst(created), iso_jst(updated), iso_jst(change_at)

    files: dict[int, list[list]] = {}  # day index (-1 = the full export) -> rows
    for row, i in enumerate(index):
        world.truth.append(("crm", f"C{i + 1:07d}", int(i)))
        extra = {
            "business": business[row],
            "birth": "" if no_birth[row] else str(world.as_of - timedelta(days=int(age[row]))),
            "opt_in": opt_in[row], "dnc": dnc[row], "deletion": deletion[row],
            "created": created_iso[row], "updated": updated_iso[row],
        }  # fmt: skip
        day = -1 if updated[row] < cut else int((updated[row] - cut) // DAY)
        files.setdefault(day, []).append(_contact_row(world, i, styles[row], extra))
        if changes[row]:  # a later version of the same contact, in a delta
            extra = {**extra, "updated": change_iso[row]}
            if change_kind[row] < 0.5:
                extra["opt_in"] = False
            elif change_kind[row] < 0.8:
                extra["email"] = person_email(people, i).replace("@", ".new@")
            else:
                extra["dnc"] = True
            later = int((change_at[row] - cut) // DAY)
            files.setdefault(later, []).append(_contact_row(world, i, styles[row], extra))
    first_delta = min([d for d in files if d >= 0], default=0)
    files.setdefault(first_delta, [])
    bad_line = _inject_crm_bad_rows(world, files[first_delta])
    written = 0
    for day in sorted(files):
        stamp = date.fromordinal(world.as_of.toordinal() - DELTA_DAYS + day)
        rows = files[day]
        data = csv_bytes(CSV_COLUMNS, rows, "cp932" if day == -1 else "utf-8")
        if day == first_delta:
            data += bad_line
            written += 1
        write_atomic(world.path(f"crm/contacts_{stamp:%Y%m%d}.csv"), data)
        written += len(rows)
    return written


def _inject_crm_bad_rows(world: World, rows: list[list]) -> bytes:
    """Rows a real CRM export carries that break the contract; each kind is counted."""
    stamp = "2026-01-01T00:00:00+09:00"
    template = ["X0000000", "佐藤", "花子", "サトウ", "ハナコ", "x@example.com", "", "", "東京都",
                "", "", "", "true", "false", "false", stamp, stamp]  # fmt: skip
    rows += [
        ["", *template[1:]],
        ["", *template[1:]],
        ["X0000001", *template[1:9], "1990-02-30", *template[10:]],
        ["X0000002", *template[1:12], "要確認", *template[13:]],
        ["X0000004", *template[1:]],
        ["X0000004", *template[1:]],
    ]
    world.inject("crm.contacts", "missing_key", 2)
    world.inject("crm.contacts", "unparsable_date", 1)
    world.inject("crm.contacts", "unparsable_boolean", 1)
    world.inject("crm.contacts", "duplicate_key", 1)  # the second X0000004
    # a line whose bytes are not UTF-8 (a name pasted from a Shift_JIS system)
    world.inject("crm.contacts", "invalid_encoding", 1)
    line = ",".join(["X0000003", *template[1:]]) + "\n"
    return line.encode("utf-8").replace("花子".encode(), "花子".encode("cp932"))


def _products(rng: np.random.Generator) -> list[tuple]:
    rows = []
    for category, names in CATEGORIES.items():
        for name in names:
            for size in ("", " 大容量"):
                product_id = len(rows) + 1
                price = int(rng.integers(5, 120)) * 100 * (2 if size else 1)
                cost = int(price * rng.uniform(0.3, 0.7))
                rows.append(
                    (
                        product_id,
                        f"SKU-{product_id:04d}",
                        name + size,
                        category,
                        price,
                        cost,
                        PRODUCTS_UPDATED_AT,
                    )
                )
    return rows


def _shop_phone_and_email(
    people: dict, i: int, email: str, noise: np.ndarray, carries_id: bool
) -> tuple[str, str]:
    """The phone (and junk e-mails) of a shop account: a new number for second identities,
    the family landline, placeholders a shop counter types in."""
    phone = f"0{people['mobile'][i]}-{people['phone_digits'][i]:08d}"
    if noise[0] < 0.08 and not carries_id:
        phone = f"080-{(people['phone_digits'][i] * 7 + 13) % 10**8:08d}"  # a new number
    elif people["family"][i] and noise[1] < 0.5:
        phone = _landline(people, i)
    if noise[2] < 0.010:
        phone = "000-0000-0000"
    if 0.010 <= noise[2] < 0.015:
        email = "test@example.com"
    elif 0.015 <= noise[2] < 0.018:
        email = "null"
    return phone, email


def _shop_customers(world: World) -> tuple[list[tuple], np.ndarray]:
    rng, people = world.rng, world.people
    persons = np.flatnonzero(people["has_shop"])
    m = len(persons)
    carries_id = rng.random(m) < 0.70
    other_email = rng.random(m) < 0.03
    case_noise = rng.random(m)
    full_width_space = rng.random(m) < 0.5
    half_kana = rng.random(m) < 0.10
    variant = rng.random(m) < 0.15
    gives_birth = rng.random(m) < 0.30
    channel = rng.choice(ACQUISITION[0], m, p=ACQUISITION[1])
    created = people["created"][persons] + rng.integers(0, 30 * DAY, m)
    created = np.minimum(created, world.end - 2 * DAY)
    created_iso = iso_jst(created)
    # identity noise: a second identity only a probabilistic match can tie (another e-mail and
    # a new phone), placeholder and junk values that must never link people, kana typos
    noise = world.noise.random((m, 4))
    rows = []
    for k, i in enumerate(persons):
        surname, given = SURNAMES[people["surname"][i]], GIVEN_NAMES[people["given"][i]]
        if people["has_crm"][i]:
            contact_id = f"C{i + 1:07d}" if carries_id[k] else None
            email = person_email(people, i)
            if (other_email[k] or noise[k, 0] < 0.08) and not carries_id[k]:
                email = f"{given[2]}.work{i}@corp.example.jp"
            elif case_noise[k] < 0.3:
                email = email.capitalize()
        else:
            contact_id = None
            email = f"guest{i}@example.net"
        phone, email = _shop_phone_and_email(people, i, email, noise[k], carries_id[k])
        kana = f"{surname[1]} {given[1]}"
        if noise[k, 3] < 0.05:  # a long vowel typed as a bar: サトウ -> サトー
            kana = kana.replace("ウ ", "ー ", 1)
        birth = (world.as_of - timedelta(days=int(people["age_days"][i]))).isoformat()
        rows.append((
            k + 1, contact_id, email,
            f"{SURNAME_VARIANTS.get(surname[0], surname[0]) if variant[k] else surname[0]}"
            f"{'　' if full_width_space[k] else ' '}{given[0]}",
            to_halfwidth_kana(kana) if half_kana[k] else kana,
            phone, f"{people['postal'][i]:07d}", PREFECTURES[people["prefecture"][i]][0],
            birth if gives_birth[k] else None,
            str(channel[k]), created_iso[k], created_iso[k],
        ))  # fmt: skip
        world.truth.append(("shop", str(k + 1), int(i)))
        world.shop_id_of[int(i)] = k + 1
    return rows, created


def _orders(
    rng: np.random.Generator, account_created: np.ndarray, end: int
) -> tuple[list[tuple], np.ndarray]:
    """Orders per account: heavy-tailed counts, between sign-up and the account's last activity."""
    m = len(account_created)
    counts = np.where(rng.random(m) < 0.15, 0, 1 + rng.negative_binomial(0.7, 0.3, m))
    counts = np.minimum(counts, 60)
    # about a third of accounts go quiet: their activity ends 180+ days before the end
    quiet = rng.random(m) < 0.35
    start = np.minimum(account_created, end - 86400)
    last_active = np.where(
        quiet,
        start + (rng.random(m) * np.maximum(end - 200 * 86400 - start, 86400)).astype("int64"),
        end - 1,
    )
    last_active = np.clip(last_active, start + 1, end - 1)
    owner = np.repeat(np.arange(m), counts)
    span = (last_active - start)[owner]
    at = start[owner] + (rng.random(len(owner)) * span).astype("int64")
    # an account that is still active bought within the last 150 days
    last_of_account = np.cumsum(counts)[counts > 0] - 1
    active = ~quiet[owner[last_of_account]]
    recent = end - (rng.random(len(last_of_account)) * 150 * 86400).astype("int64") - 1
    recent = np.maximum(recent, start[owner[last_of_account]] + 1)
    at[last_of_account[active]] = recent[active]
    order = np.lexsort((owner, at))
    owner, at = owner[order], at[order]
    status = np.where(rng.random(len(owner)) < 0.05, "cancelled", "completed")
    channel = rng.choice(["web", "app", "store", "phone"], len(owner), p=[0.55, 0.25, 0.15, 0.05])
    at_iso = iso_jst(at)
    rows = [
        (k + 1, int(owner[k]) + 1, at_iso[k], str(status[k]), str(channel[k]), at_iso[k])
        for k in range(len(owner))
    ]
    return rows, owner


def _order_items(
    rng: np.random.Generator, orders: list[tuple], products: list[tuple]
) -> list[tuple]:
    order_count = len(orders)
    lines = rng.integers(1, 5, order_count)
    order_of_line = np.repeat(np.arange(order_count), lines)
    popularity = rng.pareto(1.2, len(products)) + 0.1
    product = rng.choice(len(products), len(order_of_line), p=popularity / popularity.sum())
    quantity = rng.integers(1, 4, len(order_of_line))
    discount = np.where(
        rng.random(len(order_of_line)) < 0.2, rng.uniform(0.8, 0.9, len(order_of_line)), 1.0
    )
    prices = np.array([p[4] for p in products])[product]
    unit_price = np.round(prices * discount).astype("int64")
    return [
        (
            k + 1,
            int(order_of_line[k]) + 1,
            int(product[k]) + 1,
            int(quantity[k]),
            int(unit_price[k]),
            orders[order_of_line[k]][5],
        )
        for k in range(len(order_of_line))
    ]


def _subscriptions(world: World, customers: list[tuple], created: np.ndarray, buyers: set) -> list:
    """Subscriptions of about a fifth of the buyers. Time to cancellation is Weibull with shape
    below 1, so the cancellation hazard falls with tenure (most who cancel do so in the first
    months), and its scale shrinks with the plan's price (dearer plans are cancelled sooner).
    A subscription whose drawn cancellation falls after the end is still running: active, or
    paused for some."""
    rng, end = world.rng, world.end
    plans = {
        "monthly_box": 3980,
        "bimonthly_box": 3480,
        "supplement_monthly": 2980,
        "coffee_weekly": 1980,
    }
    reasons = [
        "price",
        "too_much_stock",
        "quality",
        "moved_to_competitor",
        "no_longer_needed",
        "other",
    ]
    rows = []
    for k, customer in enumerate(customers):
        if customer[0] not in buyers or rng.random() >= 0.2:
            continue
        plan = list(plans)[int(rng.integers(0, len(plans)))]
        started = int(created[k] + rng.integers(0, max(end - int(created[k]) - DAY, 1)))
        scale_days = 600 * (2980 / plans[plan]) ** 3
        lifetime = max(int(scale_days * DAY * rng.weibull(0.5)), DAY)
        cancelled = started + lifetime if started + lifetime < end else None
        paused = rng.random() < 0.15
        status = "cancelled" if cancelled else "paused" if paused else "active"
        iso = iso_jst(np.array([started, cancelled or started]))
        reason = reasons[int(rng.integers(0, len(reasons)))] if cancelled else None
        rows.append((
            len(rows) + 1, customer[0], plan, status, plans[plan], iso[0],
            iso[1] if cancelled else None, reason, iso[1],
        ))  # fmt: skip
    return rows


def _returns(world: World, orders: list[tuple], items: list[tuple]) -> list[tuple]:
    rng, end = world.rng, world.end
    revenue: dict[int, int] = {}
    for item in items:
        revenue[item[1]] = revenue.get(item[1], 0) + max(item[3], 0) * item[4]
    reasons = ["damaged", "wrong_item", "not_as_described", "changed_mind", "other"]
    rows = []
    for order in orders:
        if order[3] != "completed" or rng.random() >= 0.03 or order[0] not in revenue:
            continue
        at = int(datetime.fromisoformat(order[2]).timestamp()) + int(rng.integers(DAY, 14 * DAY))
        if at >= end:
            continue
        iso = iso_jst(np.array([at]))[0]
        refund = int(revenue[order[0]] * (1.0 if rng.random() < 0.6 else 0.5))
        rows.append((len(rows) + 1, order[0], iso, refund, reasons[int(rng.integers(0, 5))], iso))
    return rows


_SHOP_DDL = """
create table customers (customer_id integer primary key, contact_id text, email text,
    full_name text, full_name_kana text, phone text, postal_code text, prefecture text,
    birth_date text, acquisition_channel text, created_at text, updated_at text);
create table products (product_id integer primary key, sku text, product_name text,
    category text, list_price integer, unit_cost integer, updated_at text);
create table orders (order_id integer primary key, customer_id integer, ordered_at text,
    status text, channel text, updated_at text);
create table order_items (order_item_id integer primary key, order_id integer,
    product_id integer, quantity integer, unit_price integer, updated_at text);
create table subscriptions (subscription_id integer primary key, customer_id integer,
    plan text, status text, monthly_price integer, started_at text, cancelled_at text,
    cancel_reason text, updated_at text);
create table returns (return_id integer primary key, order_id integer, returned_at text,
    refund_amount integer, reason text, updated_at text);
create index orders_customer on orders (customer_id);
create index items_order on order_items (order_id);
"""


def _inject_shop_bad_rows(world: World, tables: dict[str, list[tuple]]) -> None:
    """Extra rows breaking the contract (no real customer's data is lost to them)."""
    stamp = iso_jst(np.array([world.end - DAY]))[0]
    customers, orders, items = tables["customers"], tables["orders"], tables["order_items"]
    customers.append((len(customers) + 1, None, "broken@example.com", "壊れた 行", None, None,
                      None, None, None, "organic", "2026-02-30T10:00:00+09:00", stamp))  # fmt: skip
    world.inject("shop.customers", "unparsable_timestamp", 1)
    if orders:
        first = orders[0]
        orders.append((len(orders) + 1, first[1], stamp, "shipped", "web", stamp))
        world.inject("shop.orders", "unknown_value", 1)
        items.append((len(items) + 1, first[0], 1, -1, 1000, stamp))
        items.append((len(items) + 1, first[0], 1, -2, 1000, stamp))
        world.inject("shop.order_items", "negative_quantity", 2)


def _write_shop(world: World) -> dict[str, int]:
    products = _products(world.rng)
    customers, created = _shop_customers(world)
    orders, _ = _orders(world.rng, created, world.end)
    items = _order_items(world.rng, orders, products)
    buyers = {o[1] for o in orders if o[3] == "completed"}
    tables = {
        "customers": customers,
        "products": products,
        "orders": orders,
        "order_items": items,
        "subscriptions": _subscriptions(world, customers, created, buyers),
        "returns": _returns(world, orders, items),
    }
    _inject_shop_bad_rows(world, tables)
    path = world.path("shop/orders.sqlite")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    try:
        db.executescript(_SHOP_DDL)
        for name, rows in tables.items():
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                db.executemany(f"insert into {name} values ({marks})", rows)
        db.commit()
    finally:
        db.close()
    os.replace(tmp, path)
    return {f"shop_{name}": len(rows) for name, rows in tables.items()}
