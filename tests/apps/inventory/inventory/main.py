"""A FastAPI service in a package (`uvicorn inventory.main:app`)."""
import logging
import os

from fastapi import FastAPI, HTTPException

log = logging.getLogger("inventory")
STOCK = {"apple": 3, "pear": 0}

app = FastAPI()


@app.get("/")
def index() -> dict[str, str]:
    return {"service": "inventory"}


@app.get("/stock/{sku}")
def stock(sku: str) -> dict[str, int]:
    if sku not in STOCK:
        raise HTTPException(status_code=404, detail="unknown sku")
    log.info("stock read", extra={"sku": sku, "count": STOCK[sku], "secret": "do-not-export"})
    return {sku: STOCK[sku]}


@app.get("/crash")
def crash() -> dict[str, str]:
    raise RuntimeError("inventory fell over")


if os.environ.get("OBSBOX_IN_APP") == "1":
    import obsbox

    obsbox.configure(service_name="inventory")
    obsbox.instrument(app)  # the README's line, its result not used
