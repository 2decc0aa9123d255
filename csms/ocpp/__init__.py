"""The only package that speaks OCPP and websockets. All 1.6 / 2.0.1 differences end here."""
