{# Money helpers shared by the models. Amounts are DECIMAL(18,2) everywhere. #}

{# An integer amount in cents (the legacy system's convention) as a money amount. #}
{% macro cents_to_amount(col) %}CAST({{ col }} / 100.0 AS DECIMAL(18,2)){% endmacro %}

{# A decimal amount read from a CSV (inferred as DOUBLE) as a money amount. #}
{% macro to_amount(col) %}CAST({{ col }} AS DECIMAL(18,2)){% endmacro %}

{# A net amount plus VAT, rounded to the cent like the shop's invoices. #}
{% macro with_vat(col, rate) %}CAST(round({{ col }} * (1 + {{ rate }}), 2) AS DECIMAL(18,2)){% endmacro %}
