"""Changes to moto that make the lab behave like AWS where a test depends on it.

Each module here has ``apply() -> None``; labd imports every module in name order and calls it
before the server takes requests. Patches fix the lab, never the product.
"""
