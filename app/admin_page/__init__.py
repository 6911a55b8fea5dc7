"""The pricing page for CPO staff (`GET /admin/`): HTML, vendored static assets, and the
preview of an unpublished tariff version that the page's editor shows before publishing."""
