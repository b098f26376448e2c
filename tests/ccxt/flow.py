"""ccxt's unified flow against Herd's venue simulators, checked against what
the simulator booked.

    python3 flow.py kraken URL KEY SECRET
    python3 flow.py bybit URL KEY SECRET

The ccxt client is used unchanged: only its API URLs point at the simulator.
Every value ccxt parses (prices, volumes, statuses, fees, timestamps) is
compared with the simulator's own records, read from its admin endpoints
(kraken-sim: /sim/orders, /sim/trades, /sim/balances; bybit-sim:
/admin/ledger). Prints one JSON line of counts at the end; exits non-zero
with the failed check on any difference.
"""

import json
import math
import sys
import urllib.request

import ccxt


def http(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read().decode())


CHECKS = {"checks": 0}


def same(label, got, want):
    """Equal; numbers compare exactly up to float parsing."""
    CHECKS["checks"] += 1
    if isinstance(got, str) and isinstance(want, (str, int, float)):
        try:
            got, want = float(got), float(want)
        except ValueError:
            pass
    if isinstance(want, str) and isinstance(got, (int, float)):
        want = float(want)
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        if math.isclose(float(got), float(want), rel_tol=1e-12, abs_tol=1e-12):
            return
    elif got == want:
        return
    raise AssertionError(f"{label}: ccxt parsed {got!r}, the simulator booked {want!r}")


def check(label, cond):
    CHECKS["checks"] += 1
    if not cond:
        raise AssertionError(label)


def kraken(url, key, secret):
    ex = ccxt.kraken({"apiKey": key, "secret": secret, "enableRateLimit": False})
    ex.urls["api"] = {"public": url, "private": url}
    sym, pair = "DOGE/USD", "XDGUSD"

    markets = ex.load_markets()
    check("load_markets lists DOGE/USD and BTC/USD", {"DOGE/USD", "BTC/USD"} <= set(markets))
    m = markets[sym]
    same("DOGE/USD id", m["id"], "XDGUSD")
    same("DOGE/USD price precision", m["precision"]["price"], 1e-7)
    same("DOGE/USD min amount", m["limits"]["amount"]["min"], 10)  # herd_paper doge_usd
    same("DOGE/USD maker fee", m["maker"], 0.0025)

    http("POST", f"{url}/sim/price", {"pair": pair, "price": "0.1234"})
    t = ex.fetch_ticker(sym)
    same("ticker last", t["last"], 0.1234)
    check("ticker bid < ask", t["bid"] < t["ask"])
    book = ex.fetch_order_book(sym, 10)
    same("book best bid = ticker bid", book["bids"][0][0], t["bid"])
    same("book best ask = ticker ask", book["asks"][0][0], t["ask"])
    check("book has 10 levels a side", len(book["bids"]) == 10 and len(book["asks"]) == 10)
    candles = ex.fetch_ohlcv(sym, "1m")
    check("ohlcv has candles", len(candles) > 0)
    same("last candle close", candles[-1][4], 0.1234)

    limit = ex.create_order(sym, "limit", "buy", 500, 0.1, {"postOnly": True, "clientOrderId": "ccxt-limit-1"})
    market = ex.create_order(sym, "market", "buy", 100)
    orders = {o["txid"]: o for o in http("GET", f"{url}/sim/orders")}
    booked = orders[limit["id"]]
    same("limit cl_ord_id", booked["cl_ord_id"], "ccxt-limit-1")
    same("limit oflags has post", "post" in booked["oflags"], True)

    open_orders = ex.fetch_open_orders(sym)
    same("open orders", [o["id"] for o in open_orders], [limit["id"]])
    o = ex.fetch_order(limit["id"], sym)
    same("fetch_order status", o["status"], "open")
    same("fetch_order clientOrderId", o["clientOrderId"], "ccxt-limit-1")
    same("fetch_order price", o["price"], booked["price"])
    same("fetch_order amount", o["amount"], booked["vol"])
    same("fetch_order filled", o["filled"], booked["vol_exec"])
    same("fetch_order side", o["side"], "buy")
    same("fetch_order timestamp", o["timestamp"], booked["opened_ms"])
    check("fetch_order postOnly", o["postOnly"] is True)

    ex.cancel_order(limit["id"], sym)
    second = ex.create_order(sym, "limit", "sell", 200, 0.2, {"postOnly": True})
    ex.cancel_all_orders(sym)
    check("nothing open after cancel_all", ex.fetch_open_orders(sym) == [])

    orders = {o["txid"]: o for o in http("GET", f"{url}/sim/orders")}
    closed = {o["id"]: o for o in ex.fetch_closed_orders(sym)}
    for oid in (limit["id"], market["id"], second["id"]):
        check(f"closed order {oid} listed", oid in closed)
        b = orders[oid]
        want = {"closed": "closed", "canceled": "canceled"}[b["status"]]
        same(f"{oid} status", closed[oid]["status"], want)
        same(f"{oid} amount", closed[oid]["amount"], b["vol"])
        same(f"{oid} filled", closed[oid]["filled"], b["vol_exec"])
        # Kraken prints cost and fee to the pair's cost_decimals (5 here).
        same(f"{oid} fee", closed[oid]["fee"]["cost"], round(float(b["fee"]), 5))
    same("market order filled in full", closed[market["id"]]["filled"], 100)

    trades = [t for t in http("GET", f"{url}/sim/trades") if t["pair"] == pair]
    mine = ex.fetch_my_trades(sym)
    same("my trades count", len(mine), len(trades))
    by_id = {t["id"]: t for t in mine}
    for b in trades:
        got = by_id[b["id"]]
        same(f"trade {b['id']} order", got["order"], b["txid"])
        same(f"trade {b['id']} price", got["price"], b["price"])
        same(f"trade {b['id']} amount", got["amount"], b["vol"])
        same(f"trade {b['id']} fee", got["fee"]["cost"], round(float(b["fee"]), 5))
        same(f"trade {b['id']} fee currency", got["fee"]["currency"], "USD")
        same(f"trade {b['id']} side", got["side"], b["side"])
        same(f"trade {b['id']} taker/maker", got["takerOrMaker"], "maker" if b["maker"] else "taker")
        same(f"trade {b['id']} timestamp", got["timestamp"], b["time_ms"])
    public = ex.fetch_trades(sym)
    same("public trades count", len(public), len(trades))
    for got, b in zip(public, trades):
        same("public trade price", got["price"], b["price"])
        same("public trade amount", got["amount"], b["vol"])
        same("public trade side", got["side"], b["side"])

    balances = http("GET", f"{url}/sim/balances")
    bal = ex.fetch_balance()
    for asset, b in balances.items():
        # Kraken prints balances to the asset's decimals (ZUSD 4, others 10).
        dp = 4 if asset == "USD" else 10
        same(f"balance {asset} total", bal["total"][asset], round(float(b["total"]), dp))
        same(f"balance {asset} free", bal["free"][asset], round(float(b["free"]), dp))

    # The ledger: a USD entry per trade (AddOrder's fciq puts the fee there),
    # newest first, its balance the simulator's.
    ledger = ex.fetch_ledger("USD")
    same("ledger USD entries", len(ledger), len(trades))
    by_ref = {e["referenceId"]: e for e in ledger}
    for b in trades:
        e = by_ref[b["id"]]
        cost = float(b["price"]) * float(b["vol"])
        same(f"ledger {b['id']} amount", e["amount"], round(cost, 4))
        same(f"ledger {b['id']} direction", e["direction"], "out" if b["side"] == "buy" else "in")
        same(f"ledger {b['id']} fee", e["fee"]["cost"], round(float(b["fee"]), 4))
        same(f"ledger {b['id']} timestamp", e["timestamp"], b["time_ms"])
    newest = max(ledger, key=lambda e: e["timestamp"])
    same("ledger newest balance", newest["after"], round(float(balances["USD"]["total"]), 4))

    # Batches and amends: AddOrderBatch and CancelOrderBatch (JSON bodies),
    # AmendOrder in place.
    batch = ex.create_orders([
        {"symbol": sym, "type": "limit", "side": "buy", "amount": 300, "price": 0.1, "params": {"postOnly": True}},
        {"symbol": sym, "type": "limit", "side": "buy", "amount": 400, "price": 0.11, "params": {"postOnly": True}},
    ])
    ids = [o["id"] for o in batch]
    orders = {o["txid"]: o for o in http("GET", f"{url}/sim/orders")}
    for oid, (vol, px) in zip(ids, [(300, 0.1), (400, 0.11)]):
        same(f"batch {oid} status", orders[oid]["status"], "open")
        same(f"batch {oid} vol", orders[oid]["vol"], vol)
        same(f"batch {oid} price", orders[oid]["price"], px)
        same(f"batch {oid} post-only", "post" in orders[oid]["oflags"], True)
    ex.edit_order(ids[0], sym, "limit", "buy", 800, 0.105)
    amended = {o["txid"]: o for o in http("GET", f"{url}/sim/orders")}[ids[0]]
    same("amend keeps the order open", amended["status"], "open")
    same("amended vol", amended["vol"], 800)
    same("amended price", amended["price"], 0.105)
    o = ex.fetch_order(ids[0], sym)
    same("fetch_order after amend amount", o["amount"], 800)
    same("fetch_order after amend price", o["price"], 0.105)
    ex.cancel_orders(ids, sym)
    orders = {o["txid"]: o for o in http("GET", f"{url}/sim/orders")}
    for oid in ids:
        same(f"batch {oid} cancelled", orders[oid]["status"], "canceled")
    check("nothing open after the batch cancel", ex.fetch_open_orders(sym) == [])
    return {"orders": 5, "trades": len(trades)}


def bybit(url, key, secret):
    ex = ccxt.bybit({"apiKey": key, "secret": secret, "enableRateLimit": False})
    ex.urls["api"] = {k: url for k in ("spot", "futures", "v2", "public", "private")}
    spot, perp = "BTC/USDT", "BTC/USDT:USDT"

    markets = ex.load_markets()
    check("load_markets lists spot and perp", {spot, perp} <= set(markets))
    same("perp is linear", markets[perp]["linear"], True)
    same("spot amount step", markets[spot]["precision"]["amount"], 1e-6)

    http("POST", f"{url}/admin/price", {"category": "spot", "symbol": "BTCUSDT", "price": "60000"})
    http("POST", f"{url}/admin/price", {"category": "linear", "symbol": "BTCUSDT", "price": "60010"})
    for s_, px in ((spot, 60000), (perp, 60010)):
        t = ex.fetch_ticker(s_)
        same(f"{s_} last", t["last"], px)
        book = ex.fetch_order_book(s_, 5)
        same(f"{s_} best bid", book["bids"][0][0], t["bid"])
        same(f"{s_} best ask", book["asks"][0][0], t["ask"])
        check(f"{s_} ohlcv", len(ex.fetch_ohlcv(s_, "1m")) > 0)

    limit = ex.create_order(spot, "limit", "buy", 0.01, 50000, {"postOnly": True, "clientOrderId": "ccxt-limit-1"})
    market = ex.create_order(spot, "market", "buy", 0.01)
    same("open orders", [o["id"] for o in ex.fetch_open_orders(spot)], [limit["id"]])
    ledger = http("GET", f"{url}/admin/ledger")
    booked = {o["orderId"]: o for o in ledger["orders"]}
    o = ex.fetch_order(limit["id"], spot, {"acknowledged": True})
    b = booked[limit["id"]]
    same("fetch_order status", o["status"], "open")
    same("fetch_order clientOrderId", o["clientOrderId"], "ccxt-limit-1")
    same("fetch_order price", o["price"], b["price"])
    same("fetch_order amount", o["amount"], b["qty"])
    same("fetch_order timestamp", o["timestamp"], b["time"])
    check("fetch_order postOnly", o["postOnly"] is True)
    ex.cancel_order(limit["id"], spot)
    second = ex.create_order(spot, "limit", "sell", 0.005, 70000, {"postOnly": True})
    ex.cancel_all_orders(spot)
    check("nothing open after cancel_all", ex.fetch_open_orders(spot) == [])
    closed = {o["id"]: o for o in ex.fetch_closed_orders(spot)}
    ledger = http("GET", f"{url}/admin/ledger")
    booked = {o["orderId"]: o for o in ledger["orders"]}
    for oid in (limit["id"], market["id"], second["id"]):
        check(f"closed order {oid} listed", oid in closed)
        want = {"Filled": "closed", "Canceled": "canceled"}[booked[oid]["status"]]
        same(f"{oid} status", closed[oid]["status"], want)
        same(f"{oid} filled", closed[oid]["filled"], booked[oid]["executed"])

    fills = {f["orderId"]: f for f in ledger["fills"]}
    mine = ex.fetch_my_trades(spot)
    same("my trades", [t["order"] for t in mine], [market["id"]])
    f = fills[market["id"]]
    same("trade price", mine[0]["price"], f["price"])
    same("trade amount", mine[0]["amount"], f["qty"])
    same("trade fee", mine[0]["fee"]["cost"], f["fee"])
    same("trade fee currency", mine[0]["fee"]["currency"], f["feeCurrency"])
    same("trade timestamp", mine[0]["timestamp"], f["time"])
    public = ex.fetch_trades(spot)
    same("public trades", [(t["price"], t["amount"]) for t in public], [(float(f["price"]), float(f["qty"]))])

    bal = ex.fetch_balance()
    for asset, total in ledger["balances"].items():
        same(f"balance {asset}", bal["total"][asset], total)

    # Amend in place (/v5/order/amend): same order id, new qty and price.
    resting = ex.create_order(spot, "limit", "buy", 0.01, 50000, {"postOnly": True})
    edited = ex.edit_order(resting["id"], spot, "limit", "buy", 0.02, 51000)
    same("amend keeps the order id", edited["id"], resting["id"])
    booked = {o["orderId"]: o for o in http("GET", f"{url}/admin/ledger")["orders"]}
    b = booked[resting["id"]]
    same("amended qty", b["qty"], 0.02)
    same("amended price", b["price"], 51000)
    o = ex.fetch_order(resting["id"], spot, {"acknowledged": True})
    same("fetch_order after amend amount", o["amount"], 0.02)
    same("fetch_order after amend price", o["price"], 51000)
    ex.cancel_order(resting["id"], spot)

    # Perpetual: open, funding settles, reduce-only close.
    opened = ex.create_order(perp, "market", "buy", 0.01)
    positions = ex.fetch_positions([perp])
    same("one position", len([p for p in positions if p["contracts"]]), 1)
    same("position size", positions[0]["contracts"], 0.01)
    same("position side", positions[0]["side"], "long")
    http("POST", f"{url}/admin/funding", {"symbol": "BTCUSDT", "rate": "0.0003", "settle_now": True})
    rate = ex.fetch_funding_rate(perp)
    same("funding rate", rate["fundingRate"], 0.0003)
    history = ex.fetch_funding_rate_history(perp)
    check("funding rate history has the settlement", any(math.isclose(h["fundingRate"], 0.0003) for h in history))
    ledger = http("GET", f"{url}/admin/ledger")
    paid = ex.fetch_funding_history(perp)
    same("funding payments", len(paid), len(ledger["funding"]))
    for got, want in zip(paid, reversed(ledger["funding"])):
        # ccxt reports Bybit's execFee: what the account paid.
        same("funding amount", -got["amount"], want["amount"])
        same("funding id", got["id"], want["id"])
        same("funding time", got["timestamp"], want["time"])
    ex.create_order(perp, "market", "sell", 0.01, None, {"reduceOnly": True})
    positions = [p for p in ex.fetch_positions([perp]) if p["contracts"]]
    same("flat after reduce-only close", positions, [])
    ledger = http("GET", f"{url}/admin/ledger")
    same("simulator agrees: no position", ledger["positions"], [])
    check("perp order booked", opened["id"] in {o["orderId"] for o in ledger["orders"]})
    return {"orders": 6, "trades": len(ledger["fills"]), "funding": len(ledger["funding"])}


def main():
    venue, url, key, secret = sys.argv[1:5]
    counts = {"kraken": kraken, "bybit": bybit}[venue](url, key, secret)
    counts.update(CHECKS)
    counts["venue"] = venue
    counts["ccxt"] = ccxt.__version__
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
