{#- The standard normal quantile (inverse CDF) of a probability p in (0, 1), as a SQL
    expression: Acklam's rational approximation (relative error below 1.15e-9), because DuckDB
    has no inverse-normal function. The campaign mart needs it for the two-sided critical value
    of the uplift interval at a configurable level: normal_quantile((1 + level) / 2).
    p is repeated in the expression, so pass a literal or a plain column. -#}
{% macro normal_quantile(p) -%}
    {%- set a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00] -%}
    {%- set b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                 6.680131188771972e+01, -1.328068155288572e+01] -%}
    {%- set c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                 -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00] -%}
    {%- set d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                 3.754408661907416e+00] -%}
    {%- set p_low = 0.02425 -%}
    {%- set p = "cast(" ~ p ~ " as double)" -%}
    {#- tails: q = sqrt(-2 ln(p)) (lower) or sqrt(-2 ln(1 - p)) (upper) -#}
    {%- set q_low = "sqrt(-2 * ln(" ~ p ~ "))" -%}
    {%- set q_high = "sqrt(-2 * ln(1 - " ~ p ~ "))" -%}
    {%- set r = "((" ~ p ~ " - 0.5) * (" ~ p ~ " - 0.5))" -%}
    case
        when {{ p }} <= 0 or {{ p }} >= 1 then null
        when {{ p }} < {{ p_low }} then
            {{ horner_polynomial(c, q_low) }} / ({{ horner_polynomial(d, q_low) }} * {{ q_low }} + 1)
        when {{ p }} > {{ 1 - p_low }} then
            -{{ horner_polynomial(c, q_high) }} / ({{ horner_polynomial(d, q_high) }} * {{ q_high }} + 1)
        else
            {{ horner_polynomial(a, r) }} * ({{ p }} - 0.5) / ({{ horner_polynomial(b, r) }} * {{ r }} + 1)
    end
{%- endmacro %}

{#- The polynomial c[0] x^(n-1) + ... + c[n-1] in Horner form (used by normal_quantile). -#}
{% macro horner_polynomial(coefficients, x) -%}
    {%- set ns = namespace(expr=coefficients[0] | string) -%}
    {%- for coefficient in coefficients[1:] -%}
        {%- set ns.expr = "(" ~ ns.expr ~ ") * " ~ x ~ " + (" ~ coefficient ~ ")" -%}
    {%- endfor -%}
    ({{ ns.expr }})
{%- endmacro %}
