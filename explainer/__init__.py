"""Streamlit explainer for the NumPy transformer: pages, app entry and chart builders."""
