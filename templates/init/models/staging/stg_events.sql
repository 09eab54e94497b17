/* @hubforge
kind        = "incremental"
time_column = "event_date"
unit        = "day"
grain       = ["event_id"]
description = "Events, cleaned and typed, one row per event"
*/
SELECT
    event_id,
    CAST(occurred_at AS DATE) AS event_date,
    occurred_at,
    lower(event_type)         AS event_type,
    amount
FROM raw_events
WHERE occurred_at >= {{ start }}
  AND occurred_at <  {{ end }}
  AND abs(amount) >= {{ var("min_amount") }}
