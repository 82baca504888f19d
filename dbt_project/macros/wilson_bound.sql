{#-
    One bound of the Wilson score interval of a proportion `rate` observed on `n` trials, at the
    standard normal quantile `z`; `side` is -1 for the lower bound, 1 for the upper. Null when
    the rate is null or n is 0.
-#}
{% macro wilson_bound(rate, n, z, side) -%}
    case when {{ rate }} is not null and {{ n }} > 0 then
        (
            {{ rate }} + {{ z }} * {{ z }} / (2 * {{ n }})
            {{ '-' if side < 0 else '+' }} {{ z }} * sqrt(
                {{ rate }} * (1 - {{ rate }}) / {{ n }} + {{ z }} * {{ z }} / (4 * {{ n }} * {{ n }})
            )
        ) / (1 + {{ z }} * {{ z }} / {{ n }})
    end
{%- endmacro %}
