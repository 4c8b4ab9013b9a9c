from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path, re_path

from observability.exposition import metrics_view
from routing.api.health import healthz, readyz
from routing.api.views import api, not_found


def root(request: HttpRequest) -> HttpResponse:
    # Claude Code preconnects with HEAD /; answer cheaply.
    return HttpResponse(
        b'{"service":"team-llm-proxy","api":"/v1","admin":"/admin/","developer":"/me/"}',
        content_type="application/json",
    )


urlpatterns = [
    path("", root),
    path("admin/", admin.site.urls),
    path("me/", include("portal.urls")),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics_view),
    path("v1/", api.urls),
    re_path(r"^v1/(?P<path>.*)$", not_found),
]
