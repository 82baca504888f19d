"""Deterministic demo exports of a Japanese D2C shop's source systems.

`generate_demo(out_dir, customers, seed, as_of)` writes, for `customers` real people:

- `crm_contacts.csv` (UTF-8): ~95% of people. Kanji names with their katakana readings; e-mails
  with noise (~10% upper case or surrounding spaces, ~2% empty); phones in mixed formats
  (090-1234-5678, 09012345678, +81-90-1234-5678, +819012345678, ~3% full-width digits, ~3%
  empty); postal codes as 150-0002, ~20% 1500002, ~3% full-width, ~2% empty; consent flags.
- `orders.sqlite`: the shop's `customers` (85% of CRM people plus every shop-only guest; 70% of
  linked accounts carry the CRM contact_id, the others only share the e-mail, sometimes in
  another letter case), `products`, `orders` (heavy-tailed order counts, ~15% of accounts never
  order, about a third of buyers stop buying more than 180 days before `as_of`), `order_items`.

The same arguments always give the same files. All times are before `as_of` 00:00 JST.
"""

from __future__ import annotations

import csv
import logging
import os
import sqlite3
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

JST = timezone(timedelta(hours=9))

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
CSV_COLUMNS = [
    "contact_id",
    "last_name",
    "first_name",
    "last_name_kana",
    "first_name_kana",
    "email",
    "phone",
    "postal_code",
    "prefecture",
    "birth_date",
    "email_opt_in",
    "do_not_contact",
    "created_at",
    "updated_at",
]
_FULLWIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")


def generate_demo(
    out_dir: Path, customers: int = 2000, seed: int = 42, as_of: date = date(2026, 11, 1)
) -> dict[str, int]:
    """Write the demo source exports to out_dir; return the row count of each file or table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    end = int(datetime.combine(as_of, datetime.min.time(), tzinfo=JST).timestamp())
    people = _people(rng, customers, end)
    counts = {"crm_contacts": _write_crm_contacts(out_dir / "crm_contacts.csv", rng, people, as_of)}
    counts.update(_write_orders_db(out_dir / "orders.sqlite", rng, people, end))
    log.info("demo sources for %d people in %s: %s", customers, out_dir, counts)
    return counts


def _iso_jst(seconds: np.ndarray) -> list[str]:
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
    }


def _email(people: dict, i: int) -> str:
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


def _write_crm_contacts(path: Path, rng: np.random.Generator, people: dict, as_of: date) -> int:
    index = np.flatnonzero(people["has_crm"])
    n = len(index)
    styles = rng.random((n, 3))
    prefectures = [p for p, _ in PREFECTURES]
    weights = np.array([w for _, w in PREFECTURES], dtype=float)
    pref = rng.choice(len(prefectures), n, p=weights / weights.sum())
    ages = rng.integers(18 * 365, 80 * 365, n)
    opt_in = rng.random(n) < 0.70
    dnc = rng.random(n) < 0.03
    no_birth = rng.random(n) < 0.10
    created = people["created"][index]
    end = int(datetime.combine(as_of, datetime.min.time(), tzinfo=JST).timestamp())
    updated = created + (rng.random(n) * (end - 1 - created)).astype("int64")
    created_iso, updated_iso = _iso_jst(created), _iso_jst(updated)

    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row, i in enumerate(index):
            surname, given = SURNAMES[people["surname"][i]], GIVEN_NAMES[people["given"][i]]
            birth = "" if no_birth[row] else (as_of - timedelta(days=int(ages[row]))).isoformat()
            writer.writerow(
                [
                    f"C{i + 1:07d}",
                    surname[0],
                    given[0],
                    surname[1],
                    given[1],
                    _noisy_email(_email(people, i), styles[row, 0]),
                    _phone(people, i, styles[row, 1]),
                    _postal(people["postal"][i], styles[row, 2]),
                    prefectures[pref[row]],
                    birth,
                    "true" if opt_in[row] else "false",
                    "true" if dnc[row] else "false",
                    created_iso[row],
                    updated_iso[row],
                ]
            )
    os.replace(tmp, path)
    return n


def _products(rng: np.random.Generator) -> list[tuple]:
    rows = []
    for category, names in CATEGORIES.items():
        for name in names:
            for size in ("", " 大容量"):
                product_id = len(rows) + 1
                price = int(rng.integers(5, 120)) * 100 * (2 if size else 1)
                cost = int(price * rng.uniform(0.3, 0.7))
                rows.append(
                    (product_id, f"SKU-{product_id:04d}", name + size, category, price, cost)
                )
    return rows


def _shop_customers(rng: np.random.Generator, people: dict) -> tuple[list[tuple], np.ndarray]:
    persons = np.flatnonzero(people["has_shop"])
    carries_id = rng.random(len(persons)) < 0.70
    case_noise = rng.random(len(persons))
    full_width_space = rng.random(len(persons)) < 0.5
    created = people["created"][persons] + rng.integers(0, 30 * 86400, len(persons))
    created_iso = _iso_jst(created)
    rows = []
    for k, i in enumerate(persons):
        surname, given = SURNAMES[people["surname"][i]][0], GIVEN_NAMES[people["given"][i]][0]
        if people["has_crm"][i]:
            contact_id = f"C{i + 1:07d}" if carries_id[k] else None
            email = _email(people, i)
            if case_noise[k] < 0.3:
                email = email.capitalize()
        else:
            contact_id = None
            email = f"guest{i}@example.net"
        phone = f"0{people['mobile'][i]}-{people['phone_digits'][i]:08d}"
        name = f"{surname}{'　' if full_width_space[k] else ' '}{given}"
        rows.append((k + 1, contact_id, email, name, phone, created_iso[k]))
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
    at_iso = _iso_jst(at)
    rows = [
        (k + 1, int(owner[k]) + 1, at_iso[k], str(status[k]), str(channel[k]))
        for k in range(len(owner))
    ]
    return rows, owner


def _order_items(rng: np.random.Generator, order_count: int, products: list[tuple]) -> list[tuple]:
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
        )
        for k in range(len(order_of_line))
    ]


def _write_orders_db(
    path: Path, rng: np.random.Generator, people: dict, end: int
) -> dict[str, int]:
    products = _products(rng)
    customers, account_created = _shop_customers(rng, people)
    orders, _ = _orders(rng, account_created, end)
    items = _order_items(rng, len(orders), products)

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    try:
        db.executescript(
            """
            create table customers (customer_id integer primary key, contact_id text, email text,
                full_name text, phone text, created_at text);
            create table products (product_id integer primary key, sku text, product_name text,
                category text, list_price integer, unit_cost integer);
            create table orders (order_id integer primary key, customer_id integer,
                ordered_at text, status text, channel text);
            create table order_items (order_item_id integer primary key, order_id integer,
                product_id integer, quantity integer, unit_price integer);
            """
        )
        db.executemany("insert into customers values (?, ?, ?, ?, ?, ?)", customers)
        db.executemany("insert into products values (?, ?, ?, ?, ?, ?)", products)
        db.executemany("insert into orders values (?, ?, ?, ?, ?)", orders)
        db.executemany("insert into order_items values (?, ?, ?, ?, ?)", items)
        db.executescript(
            "create index orders_customer on orders (customer_id);"
            "create index items_order on order_items (order_id);"
        )
        db.commit()
    finally:
        db.close()
    os.replace(tmp, path)
    return {
        "shop_customers": len(customers),
        "shop_products": len(products),
        "shop_orders": len(orders),
        "shop_order_items": len(items),
    }
