"""crm360: a warehouse-native customer 360 for CRM teams.

Airflow loads source systems into DuckDB, dbt builds the customer 360 and the segment and
value marts, Great Expectations gates data quality, and the activation package exports
audiences for marketing tools. This package holds the Python shared by the DAGs and the CLI.
"""

__version__ = "0.1.0"
