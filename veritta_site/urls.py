from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("", include("governance.urls")),
    path("", include("sessions_app.urls")),
    path("", include("audit.urls")),
    path("console/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]

handler400 = "veritta_site.errors.handler400"
handler404 = "veritta_site.errors.handler404"
handler500 = "veritta_site.errors.handler500"
