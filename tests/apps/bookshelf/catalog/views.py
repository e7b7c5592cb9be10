import logging

from django.http import Http404, HttpResponse, JsonResponse

log = logging.getLogger("catalog")
BOOKS = {1: "Dune", 2: "Solaris"}


def index(request):
    return HttpResponse("bookshelf")


def book(request, pk):
    if pk not in BOOKS:
        raise Http404("no such book")
    log.info("book looked up", extra={"book_id": pk, "api_token": "s3cret-token"})
    return JsonResponse({"pk": pk, "title": BOOKS[pk]})


def crash(request):
    raise RuntimeError("the shelf fell over")
