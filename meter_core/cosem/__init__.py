"""COSEM interface classes, the object model, and the IS 15959 catalogue."""
