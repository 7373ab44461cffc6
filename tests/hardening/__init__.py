"""Regression tests for issue #14 (hardening): every defect found by adversarial use, black-box."""
