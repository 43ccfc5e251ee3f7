"""The built-in demo database of ``portcullis sql`` (no ``--db``): a small shop in SQLite.

Built fresh in a private temporary directory at every start, from a fixed seed, and then opened
read-only like any other file. ``customers``, ``products`` and ``orders`` are there to query;
``users_credentials`` holds password hashes and API tokens and is blocked by default, so the
demo shows a blocked table staying invisible. ``customers.notes`` carries one secret-looking
value (built at run time, never stored in the repository) to show the redactor at work.
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
from pathlib import Path

__all__ = ["build_demo"]

_SCHEMA = """
CREATE TABLE customers (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  email TEXT NOT NULL,
  city TEXT NOT NULL,
  created_at TEXT NOT NULL,
  notes TEXT
);
CREATE TABLE products (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  category TEXT NOT NULL,
  price REAL NOT NULL
);
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers (id),
  product_id INTEGER NOT NULL REFERENCES products (id),
  quantity INTEGER NOT NULL,
  ordered_at TEXT NOT NULL,
  status TEXT NOT NULL
);
CREATE TABLE users_credentials (
  customer_id INTEGER PRIMARY KEY REFERENCES customers (id),
  password_hash TEXT NOT NULL,
  api_token TEXT NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE VIEW customer_totals AS
  SELECT c.id AS customer_id, c.name, count(o.id) AS orders,
         round(sum(o.quantity * p.price), 2) AS spent
  FROM customers c
  LEFT JOIN orders o ON o.customer_id = c.id
  LEFT JOIN products p ON p.id = o.product_id
  GROUP BY c.id, c.name;
"""

_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
_CITIES = ["London", "New York", "Amsterdam", "Zurich", "Berlin", "Paris", "Tokyo", "Sydney"]
_PRODUCTS = [
    ("Mechanical keyboard", "hardware", 129.0),
    ("USB-C dock", "hardware", 89.5),
    ("27-inch monitor", "hardware", 319.99),
    ("Noise-cancelling headphones", "audio", 249.0),
    ("Desk microphone", "audio", 99.0),
    ("Standing desk", "furniture", 549.0),
    ("Ergonomic chair", "furniture", 429.0),
    ("Laptop stand", "accessories", 39.9),
    ("Cable kit", "accessories", 19.5),
    ("Webcam", "hardware", 79.0),
]
_STATUSES = ["delivered", "delivered", "delivered", "shipped", "pending", "cancelled"]


def build_demo(directory: str | None = None) -> str:
    """Create the demo database file and return its path (in a fresh private temp dir)."""
    root = directory or tempfile.mkdtemp(prefix="portcullis-sql-demo-")
    path = str(Path(root) / "shop.db")
    rng = random.Random(20260728)  # noqa: S311 - demo rows, the same at every start
    conn = sqlite3.connect(path)
    try:
        conn.executescript(_SCHEMA)
        customers: list[tuple[int, str, str, str, str, str | None]] = []
        for i in range(1, 41):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            email = f"{first.lower()}.{last.lower()}{i}@example.com"
            day = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            customers.append((i, f"{first} {last}", email, rng.choice(_CITIES), day, None))
        # A secret pasted into a free-text field, as happens in real databases: the redactor
        # finds it. Assembled here so that no secret-shaped string sits in the source.
        leaked = "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        customers[6] = (*customers[6][:5], f"asked us to store their AWS key {leaked}")
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)", customers)
        conn.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?)",
            [(i, *p) for i, p in enumerate(_PRODUCTS, start=1)],
        )
        orders = []
        for i in range(1, 301):
            day = f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d}"
            orders.append(
                (
                    i,
                    rng.randint(1, 40),
                    rng.randint(1, len(_PRODUCTS)),
                    rng.randint(1, 4),
                    day,
                    rng.choice(_STATUSES),
                )
            )
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", orders)
        creds = [
            (
                i,
                "$argon2id$v=19$m=65536,t=3,p=4$" + os.urandom(12).hex(),
                "tok_" + os.urandom(16).hex(),
            )
            for i in range(1, 41)
        ]
        conn.executemany("INSERT INTO users_credentials VALUES (?, ?, ?)", creds)
        conn.commit()
    finally:
        conn.close()
    os.chmod(path, 0o400)
    return path
