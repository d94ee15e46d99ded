"""Pages and helpers of the Streamlit app (`streamlit run app.py`); each page module has ``render()``."""
