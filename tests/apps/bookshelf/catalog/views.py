import logging

from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

log = logging.getLogger("catalog")
BOOKS = {1: "Dune", 2: "Solaris"}


def index(request):
    return HttpResponse("bookshelf")


@require_GET
def book(request, pk):
    if pk not in BOOKS:
        raise Http404("no such book")
    log.info("book looked up", extra={"book_id": pk, "api_token": "s3cret-token"})
    return JsonResponse({"pk": pk, "title": BOOKS[pk]})


def crash(request):
    raise RuntimeError("the shelf fell over")
