{# The legacy order system's one-letter status codes, mapped to the new system's statuses:
   N = new, S = shipped, D = delivered (reported as shipped), X = cancelled. #}
{% macro legacy_status(col) %}CASE {{ col }} WHEN 'N' THEN 'placed' WHEN 'S' THEN 'shipped' WHEN 'D' THEN 'shipped' WHEN 'X' THEN 'cancelled' END{% endmacro %}
