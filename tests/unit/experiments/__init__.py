"""Tests of aisd.experiments (a package so that test module names do not clash with other systems')."""
