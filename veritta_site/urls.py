from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("", include("edge.urls")),  # by name: the site imports no app
    path("console/", admin.site.urls),
    # APPEND_SLASH is off (API paths have no trailing slash); the console's own address is typed without one too.
    path("console", RedirectView.as_view(url="/console/", permanent=False)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]

handler400 = "veritta_site.errors.handler400"
handler404 = "veritta_site.errors.handler404"
handler500 = "veritta_site.errors.handler500"
