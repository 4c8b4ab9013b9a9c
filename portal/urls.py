from django.urls import path

from portal import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("keys/new/", views.key_create, name="key_create"),
    path("keys/<int:key_id>/rotate/", views.key_rotate, name="key_rotate"),
    path("keys/<int:key_id>/revoke/", views.key_revoke, name="key_revoke"),
    path("usage.csv", views.usage_export, name="usage_export"),
]
