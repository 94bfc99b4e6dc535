from django.http import HttpResponseBadRequest


class RejectNulBytesMiddleware:
    """A NUL byte in a query or form value can never match anything, and Postgres refuses it in
    a string literal: answer 400 here rather than a 500 from deep inside a filter or search."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        for values in (request.GET, request.POST if request.content_type != "application/json" else {}):
            if any("\x00" in key or any("\x00" in v for v in values.getlist(key)) for key in values):
                return HttpResponseBadRequest("NUL bytes are not allowed in parameters.")
        return self.get_response(request)
