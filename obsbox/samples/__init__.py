"""The sample shop: four small services that use obsbox as any service would, plus load and fault injection.

>>> from obsbox.samples import SERVICES
>>> [(s.name, s.default_port) for s in SERVICES.values()]
[('gateway', 8080), ('orders', 8081), ('payments', 8082), ('inventory', 8083)]

    gateway   (FastAPI + httpx)  → orders (FastAPI) → payments (Flask, WSGI)
                                                    → inventory (plain ASGI)

`python -m obsbox.samples` runs them on 127.0.0.1; `obsbox.samples.shop.start()` does the same from Python;
`obsbox.samples.load.run()` drives traffic; `obsbox.samples.faults` injects errors, latency and outages.
Importing this package needs nothing beyond obsbox itself; the services need the `samples` extra.
"""

from obsbox.samples._services import SERVICES, ServiceInfo

__all__ = ["SERVICES", "ServiceInfo"]
